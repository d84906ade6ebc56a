//! Lines typed by the user. On a terminal: rustyline, with line editing and
//! a history kept in `~/.dipc_history`. Otherwise (input from a pipe or a
//! file, as in the tests): the seed's plain way, the prompt printed on
//! stdout and one line read from stdin.

use std::io::{self, BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;

use crate::say;
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::{
    ConditionalEventHandler, DefaultEditor, EventHandler, ExternalPrinter as _, KeyCode, KeyEvent,
    Modifiers,
};

/// The history file's name, in $HOME.
const HISTORY_FILE: &str = ".dipc_history";
const HISTORY_LINES: usize = 1000;

/// What one read of the keyboard gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// A line, without its newline: its bytes as typed (piped input need
    /// not be UTF-8; an editor's always is).
    Line(Vec<u8>),
    /// Ctrl-C: the line being typed is dropped.
    Interrupted,
    /// Ctrl-D, or the end of the input.
    End,
}

/// A typed line as text, bytes that are not UTF-8 replaced (U+FFFD).
pub fn text(line: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(line)
}

/// Prints one line (given without its newline) from any thread, without
/// garbling the line the user is typing.
pub type Printer = Box<dyn FnMut(String) + Send>;

fn plain_printer() -> Printer {
    Box::new(|line| say::line(&line))
}

pub trait Keyboard {
    /// Shows `prompt` and reads one line.
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed>;
    /// Keeps `line` in the history (a terminal's only).
    fn remember(&mut self, _line: &str) {}
    /// A printer for other threads.
    fn printer(&mut self) -> Printer {
        plain_printer()
    }
}

/// The keyboard for this process's stdin: an editor on a terminal, plain
/// lines otherwise.
pub fn open() -> Box<dyn Keyboard> {
    match Editor::for_terminal() {
        Some(editor) => Box::new(editor),
        None => Box::new(Plain),
    }
}

/// Lines from stdin, each after its prompt on stdout.
pub struct Plain;

impl Keyboard for Plain {
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed> {
        say::out(prompt);
        let mut line = Vec::new();
        if io::stdin()
            .lock()
            .read_until(b'\n', &mut line)
            .context("reading the keyboard")?
            == 0
        {
            return Ok(Typed::End);
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(Typed::Line(line))
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
    /// An editor when stdin is a terminal (that rustyline can drive).
    pub fn for_terminal() -> Option<Editor> {
        if io::stdin().is_terminal() {
            Editor::new().ok()
        } else {
            None
        }
    }

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

    /// Enter (and Ctrl-J) asks `handler` first: what it returns is done
    /// instead of ending the line (None: the line ends as usual).
    pub fn on_enter<H: ConditionalEventHandler + Clone + 'static>(&mut self, handler: H) {
        for key in [
            KeyEvent(KeyCode::Enter, Modifiers::NONE),
            KeyEvent::ctrl('J'),
        ] {
            let handler: Box<dyn ConditionalEventHandler> = Box::new(handler.clone());
            self.editor
                .bind_sequence(key, EventHandler::Conditional(handler));
        }
    }
}

impl Keyboard for Editor {
    fn line(&mut self, prompt: &str) -> anyhow::Result<Typed> {
        match self.editor.readline(prompt) {
            Ok(line) => Ok(Typed::Line(line.into_bytes())),
            Err(ReadlineError::Interrupted) => Ok(Typed::Interrupted),
            Err(ReadlineError::Eof) => Ok(Typed::End),
            Err(e) => Err(e).context("reading the keyboard"),
        }
    }

    /// Lines appear above the prompt, the line being typed redrawn below.
    fn printer(&mut self) -> Printer {
        match self.editor.create_external_printer() {
            Ok(mut printer) => Box::new(move |line| {
                let _ = printer.print(format!("{line}\n"));
            }),
            Err(_) => plain_printer(),
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
