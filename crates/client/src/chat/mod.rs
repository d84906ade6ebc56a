//! `client chat <m> --nick NAME`: a terminal chat in one mailbox, on dipc's
//! `append` and `wait`. On entry the mailbox's lines are shown; then one
//! thread on a connection of its own waits for each new version and prints
//! the new lines above the prompt (rustyline's ExternalPrinter), while each
//! line the user types is appended, on another connection, as `HH:MM:SS
//! NAME: text`. The user's own lines come back through the wait like
//! everyone's, so every client shows every line once, in the mailbox's
//! order. `/quit` or Ctrl-D leaves.

mod clock;
mod follow;
mod lines;
mod send;

use std::process::ExitCode;
use std::sync::mpsc::Sender;
use std::thread;

use clap::Args;

use crate::keyboard::{self, Editor, Keyboard, Plain, Typed};
use crate::oneshot::{self, Target};
use crate::outcome::{self, Failure, Status};
use crate::say;
use follow::{Follower, Lost};
use send::{SendOnEnter, QUIT};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The mailbox the chat lives in, 1..k
    #[arg(value_name = "M")]
    pub mailbox: u32,
    /// The name that signs your lines
    #[arg(long, value_name = "NAME")]
    pub nick: String,
    #[command(flatten)]
    pub target: Target,
}

/// Runs the chat; its exit status is one-shot's (docs/prog3.md): 0 done, 1
/// the server refused (no `wait`, a bad mailbox), 2 usage (a bad --nick),
/// 4 no server reached or understood.
pub fn run(args: &ChatArgs, outer: &Target) -> ExitCode {
    outcome::exit("chat", chat(args, outer).map(|()| Status::Done))
}

fn chat(args: &ChatArgs, outer: &Target) -> Result<(), Failure> {
    let nick = args.nick.trim();
    if nick.is_empty() || nick.chars().any(char::is_control) {
        return Err(Failure::Usage(format!(
            "--nick {:?}: a name of printable characters is needed",
            args.nick
        )));
    }
    let mailbox = args.mailbox;
    let talk = oneshot::connect(&args.target, outer)?;
    let server = talk.addr();
    let (mut follower, history) = Follower::start(server, mailbox)?;
    say::line(&format!(
        "chat in mailbox {mailbox} of {server} as {nick}: type a line and Enter to send it, \
         {QUIT} or Ctrl-D to leave"
    ));
    for line in history {
        say::line(&line);
    }
    let prompt = format!("{nick}> ");
    let mut editor = Editor::for_terminal();
    let (printer, errors) = match editor.as_mut() {
        Some(editor) => (editor.printer(), editor.printer()),
        None => (Plain.printer(), Plain.printer()),
    };
    let lost = Lost::default();
    let following = lost.clone();
    thread::spawn(move || follower.follow(printer, &following));
    let (lines, sender) = send::start(talk, mailbox, nick.to_string(), errors);
    let typed = match editor {
        Some(mut editor) => {
            editor.on_enter(SendOnEnter {
                lines: lines.clone(),
                lost: lost.clone(),
            });
            // The editor (and its Enter's Sender) goes when this ends.
            type_lines(&mut editor, &prompt, None, &lost)
        }
        None => type_lines(&mut Plain, &prompt, Some(&lines), &lost),
    };
    // The lines typed so far are sent before leaving.
    drop(lines);
    let _ = sender.join();
    typed?;
    // A chat whose server is gone ends as a lost connection does.
    match lost.take() {
        Some(cause) => Err(Failure::Following { mailbox, cause }),
        None => Ok(()),
    }
}

/// Reads the keyboard until /quit, the end of the input, or a line typed
/// after the follower lost the server. On a terminal Enter sends each line
/// itself (see SendOnEnter), and the editor returns only /quit (or any
/// line once the server is lost); otherwise each line read goes to
/// `lines`.
fn type_lines(
    keyboard: &mut dyn Keyboard,
    prompt: &str,
    lines: Option<&Sender<String>>,
    lost: &Lost,
) -> Result<(), Failure> {
    loop {
        match keyboard.line(prompt).map_err(Failure::Keyboard)? {
            Typed::Line(line) => {
                // Piped bytes that are not UTF-8 go as their replacement
                // characters: a chat line is text.
                let line = keyboard::text(&line);
                if line.trim() == QUIT || lost.is_lost() {
                    return Ok(());
                }
                if let Some(lines) = lines.filter(|_| !line.trim().is_empty()) {
                    let _ = lines.send(line.into_owned());
                }
            }
            Typed::Interrupted => {}
            Typed::End => return Ok(()),
        }
    }
}
