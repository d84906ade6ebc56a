//! Lines typed by the user. On a terminal: rustyline, with line editing and
//! a history kept in `~/.dipc_history`. Otherwise (input from a pipe or a
//! file, as in the tests): the seed's plain way, the prompt printed on
//! stdout and one line read from stdin.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

/// The history file's name, in $HOME.
const HISTORY_FILE: &str = ".dipc_history";
const HISTORY_LINES: usize = 1000;

/// What one read of the keyboard gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// A line, without its newline.
    Line(String),
    /// Ctrl-C: the line being typed is dropped.
    Interrupted,
    /// Ctrl-D, or the end of the input.
    End,
}

pub trait Keyboard {
    /// Shows `prompt` and reads one line.
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed>;
    /// Keeps `line` in the history (a terminal's only).
    fn remember(&mut self, _line: &str) {}
}

/// The keyboard for this process's stdin: an editor on a terminal, plain
/// lines otherwise.
pub fn open() -> Box<dyn Keyboard> {
    if io::stdin().is_terminal() {
        // A terminal rustyline cannot drive still gives plain lines.
        if let Ok(editor) = Editor::new() {
            return Box::new(editor);
        }
    }
    Box::new(Plain)
}

/// Lines from stdin, each after its prompt on stdout.
pub struct Plain;

impl Keyboard for Plain {
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed> {
        print!("{prompt}");
        let _ = io::stdout().flush();
        let mut line = String::new();
        if io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the keyboard")?
            == 0
        {
            return Ok(Typed::End);
        }
        Ok(Typed::Line(line.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// rustyline's editor and where its history is kept.
pub struct Editor {
    editor: DefaultEditor,
    history: Option<PathBuf>,
}

/// `$HOME/.dipc_history`, when there is a home.
fn history_path() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    home.is_dir().then(|| home.join(HISTORY_FILE))
}

impl Editor {
    pub fn new() -> rustyline::Result<Editor> {
        let config = Config::builder()
            .max_history_size(HISTORY_LINES)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .build();
        let mut editor = DefaultEditor::with_config(config)?;
        let history = history_path();
        if let Some(path) = &history {
            // A missing or unreadable file is an empty history.
            let _ = editor.load_history(path);
        }
        Ok(Editor { editor, history })
    }

    /// Prints above the prompt from another thread, while the user types.
    pub fn printer(&mut self) -> rustyline::Result<impl rustyline::ExternalPrinter + Send> {
        self.editor.create_external_printer()
    }
}

impl Keyboard for Editor {
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed> {
        match self.editor.readline(prompt) {
            Ok(line) => Ok(Typed::Line(line)),
            Err(ReadlineError::Interrupted) => Ok(Typed::Interrupted),
            Err(ReadlineError::Eof) => Ok(Typed::End),
            Err(e) => Err(e).context("reading the keyboard"),
        }
    }

    fn remember(&mut self, line: &str) {
        if self.editor.add_history_entry(line).unwrap_or(false) {
            if let Some(path) = &self.history {
                // Saved at once: a client that is killed keeps its
                // history. A home that is not writable keeps none.
                let _ = self.editor.save_history(path);
            }
        }
    }
}
