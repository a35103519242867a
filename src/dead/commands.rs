//! What each `warren dead` command does with each letter of its pass.

use super::letter::{Category, Letter, replay_properties};
use super::pass::{Action, Pass};
use super::{Command, Selection, read, render, report};
use crate::error::{Error, Result};
use lapin::message::Delivery;
use lapin::protocol::BasicProperties;
use std::io::Write;

/// Rows `list` prints when `--limit` is not given (the summary counts all).
const LIST_ROWS: usize = 50;

pub(super) async fn run(mut pass: Pass<'_>, command: Command, out: &mut dyn Write) -> Result<()> {
    let mut output = Output::new(out);
    match command {
        Command::List { selection, json } => list(&pass, selection, json, &mut output).await?,
        Command::Show { id } => show(&pass, &id, &mut output).await?,
        Command::Replay {
            selection,
            dry_run,
            rate,
        } => {
            pass.rate = rate;
            act(&pass, selection, Action::Replay, dry_run, &mut output).await?;
        }
        Command::Purge { selection, dry_run } => {
            act(&pass, selection, Action::Remove, dry_run, &mut output).await?;
        }
        Command::Export { mut selection } => {
            pass.run(|d| {
                let letter = read(d);
                if selection.pick(&letter) {
                    output.line(&render::export_line(&letter, &d.properties, &d.data));
                }
                (Action::Keep, None)
            })
            .await?;
        }
    }
    output.finish()
}

/// `replay` (to the work queue) or `purge` (`Action::Remove`) of the
/// selected letters; a dry run prints them and changes nothing.
async fn act(
    pass: &Pass<'_>,
    mut selection: Selection,
    action: Action,
    dry_run: bool,
    output: &mut Output<'_>,
) -> Result<()> {
    let verb = match action {
        Action::Replay => "replay",
        _ => "purge",
    };
    let counts = pass
        .run(|d| {
            let letter = read(d);
            if !selection.pick(&letter) {
                return (Action::Keep, None);
            }
            if dry_run {
                output.line(&format!("would {verb} {}", render::row(&letter, &d.data)));
                return (Action::Keep, None);
            }
            let props = (action == Action::Replay).then(|| replay_properties(&d.properties));
            (action, props)
        })
        .await?;
    let (done, n) = match (dry_run, action) {
        (true, _) => (format!("would {verb}"), selection.picked),
        (false, Action::Replay) => ("replayed".into(), counts.replayed),
        (false, _) => ("purged".into(), counts.removed),
    };
    output.line(&report(&counts, &done, n, pass.dead));
    Ok(())
}

/// `list`: a summary of every letter by category, then the matching rows
/// (text: at most `--limit`, default 50; JSON: one object per line, streamed).
async fn list(
    pass: &Pass<'_>,
    mut selection: Selection,
    json: bool,
    output: &mut Output<'_>,
) -> Result<()> {
    let mut by_category = [0usize; 5];
    let mut matching = 0usize;
    let mut rows = Vec::new();
    if !json && selection.limit.is_none() {
        selection.limit = Some(LIST_ROWS);
    }
    let counts = pass
        .run(|d| {
            let letter = read(d);
            let slot = Category::ALL.iter().position(|c| *c == letter.category);
            by_category[slot.unwrap_or(4)] += 1;
            matching += usize::from(selection.matches(&letter));
            if selection.pick(&letter) {
                match json {
                    true => {
                        output.line(&render::json_row(&letter, &d.properties, &d.data).to_string())
                    }
                    false => rows.push(render::row(&letter, &d.data)),
                }
            }
            (Action::Keep, None)
        })
        .await?;
    if json {
        return Ok(());
    }
    output.line(render::summary(pass.dead, &by_category).trim_end());
    if rows.is_empty() {
        return Ok(());
    }
    output.line("");
    output.line(&render::row_header());
    for row in &rows {
        output.line(row);
    }
    if matching > rows.len() {
        output.line(&format!(
            "… {} more matching; see them with --limit {matching}",
            matching - rows.len()
        ));
    }
    if let Some(why) = counts.stopped {
        output.line(&format!("(stopped early: {why})"));
    }
    Ok(())
}

/// `show`: the first letter with message id `id`, in full.
async fn show(pass: &Pass<'_>, id: &str, output: &mut Output<'_>) -> Result<()> {
    let mut found: Option<(Letter, BasicProperties, Vec<u8>)> = None;
    let counts = pass
        .run(|d: &Delivery| {
            if found.is_none()
                && d.properties
                    .message_id()
                    .as_ref()
                    .is_some_and(|m| m.as_str() == id)
            {
                found = Some((read(d), d.properties.clone(), d.data.clone()));
            }
            (Action::Keep, None)
        })
        .await?;
    match found {
        Some((letter, props, body)) => {
            output.line(render::show(&letter, &props, &body).trim_end());
            Ok(())
        }
        None => Err(Error::DeadQueue {
            queue: pass.dead.to_owned(),
            problem: format!(
                "holds no message with id '{id}' ({} looked at)",
                counts.seen
            ),
            fix: "copy an id from `warren dead list`".into(),
        }),
    }
}

/// Lines to `out`; the first write error is kept (a closed pipe must not
/// stop the pass half-way: the rotation finishes, then the error is told).
struct Output<'a> {
    out: &'a mut dyn Write,
    error: Option<std::io::Error>,
}

impl<'a> Output<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Output { out, error: None }
    }

    fn line(&mut self, text: &str) {
        if self.error.is_none()
            && let Err(e) = writeln!(self.out, "{text}")
        {
            self.error = Some(e);
        }
    }

    fn finish(self) -> Result<()> {
        let flushed = self.out.flush();
        match self.error.map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::Io {
                context: "writing the output".into(),
                source: e,
            }),
        }
    }
}
