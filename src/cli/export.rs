//! `aloud export`: records from the capture database through the pure exporter
//! ([`crate::export`]) to files: `--dedupe`, `--sample`, `--split` into one file per split, and
//! `--ids` sidecars with one id per output line.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::data::{
    DbArgs, FilterArgs, UNREADABLE_NAMED, database, fail, filter, open, reading_failed,
};
use crate::export::select::{Dedupe, Sample, Split};
use crate::export::{ExportCounts, Format, Line, Options, Skip, header, render};
use crate::store::{Store, StoreErrorKind};

/// `aloud export`'s own flags (the filter and database are shared with `stats`).
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// chat-jsonl, openai-evals, inspect or csv.
    #[arg(long)]
    pub format: String,
    /// Output file (default: standard output); with --split, one file per split named
    /// `NAME.SPLIT.EXT` (out.jsonl -> out.train.jsonl).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write each output line's id (request id, `id#attempt` for a retry) to this file, one a
    /// line in the same order; with --split, one file per split named as for --out.
    #[arg(long, value_name = "FILE")]
    pub ids: Option<PathBuf>,
    /// Put the answer's reasoning in the output (chat-jsonl: `reasoning_content`; Inspect has it
    /// in its metadata always).
    #[arg(long)]
    pub reasoning: bool,
    /// Leave out records whose normalised conversation was already written.
    #[arg(long)]
    pub dedupe: bool,
    /// Leave out stored records that cannot be read (damaged, or written by hand), naming the
    /// first few on standard error and counting them, instead of stopping at the first.
    #[arg(long)]
    pub skip_unreadable: bool,
    /// Keep N records, chosen by --seed (deterministic).
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// The seed of --sample (default 0).
    #[arg(long, value_name = "S", requires = "sample")]
    pub seed: Option<u64>,
    /// Split by a hash of the request id, like `train=0.9,test=0.1` (shares add up to 1).
    #[arg(long, value_name = "NAME=SHARE,...", requires = "out")]
    pub split: Option<String>,
}

/// One output file (and its ids sidecar).
struct Output {
    name: Option<String>,
    path: Option<PathBuf>,
    lines: Box<dyn Write>,
    ids: Option<BufWriter<File>>,
    written: u64,
}

impl Output {
    fn write(&mut self, line: &Line) -> std::io::Result<()> {
        self.lines.write_all(&line.bytes)?;
        if let Some(ids) = &mut self.ids {
            writeln!(ids, "{}", line.id)?;
        }
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.lines.flush()?;
        if let Some(ids) = &mut self.ids {
            ids.flush()?;
        }
        Ok(())
    }
}

/// `out.jsonl` -> `out.train.jsonl`; `out` -> `out.train`.
pub fn split_path(path: &Path, split: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, path.extension()) {
        (Some(stem), Some(ext)) => format!("{stem}.{split}.{}", ext.to_string_lossy()),
        (Some(stem), None) => format!("{stem}.{split}"),
        (None, _) => split.to_owned(),
    };
    path.with_file_name(name)
}

fn create(path: &Path) -> Result<BufWriter<File>, String> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn outputs(
    args: &ExportArgs,
    format: Format,
    split: Option<&Split>,
) -> Result<Vec<Output>, String> {
    let names: Vec<Option<String>> = match split {
        Some(s) => s.names().map(|n| Some(n.to_owned())).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for name in names {
        let named = |p: &Path| match &name {
            Some(n) => split_path(p, n),
            None => p.to_owned(),
        };
        let path = args.out.as_deref().map(named);
        let mut lines: Box<dyn Write> = match &path {
            Some(p) => Box::new(create(p)?),
            None => Box::new(BufWriter::new(std::io::stdout().lock())),
        };
        lines
            .write_all(&header(format))
            .map_err(|e| format!("cannot write: {e}"))?;
        let ids = args
            .ids
            .as_deref()
            .map(named)
            .map(|p| create(&p))
            .transpose()?;
        out.push(Output {
            name,
            path,
            lines,
            ids,
            written: 0,
        });
    }
    Ok(out)
}

pub fn export(db: &DbArgs, which: &FilterArgs, args: &ExportArgs) -> ExitCode {
    match run(db, which, args) {
        Ok(report) => {
            eprintln!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn run(db: &DbArgs, which: &FilterArgs, args: &ExportArgs) -> Result<String, String> {
    let format = Format::parse(&args.format).ok_or_else(|| {
        format!(
            "--format {:?}: use chat-jsonl, openai-evals, inspect or csv",
            args.format
        )
    })?;
    if args.reasoning && !format.takes_reasoning() {
        return Err(format!(
            "--reasoning: {format} has no field for reasoning (chat-jsonl and inspect have)"
        ));
    }
    let split = args
        .split
        .as_deref()
        .map(Split::parse)
        .transpose()
        .map_err(|e| format!("--split: {e}"))?;
    let store = open(&database(db)?)?;
    let filter = filter(which)?;
    let records = store.query(&filter).map_err(|e| e.to_string())?;
    let mut outs = outputs(args, format, split.as_ref())?;
    let options = Options {
        reasoning: args.reasoning,
        dedupe: args.dedupe,
    };
    // Feedback is joined where the format shows it.
    let joins_feedback = matches!(format, Format::Inspect | Format::Csv);
    let mut counts = ExportCounts::default();
    let mut dedupe = args.dedupe.then(Dedupe::default);
    let mut sample = args.sample.map(|n| Sample::new(n, args.seed.unwrap_or(0)));
    // A progress line on the terminal, only when the output goes to a file.
    let progress = args.out.is_some() && std::io::stderr().is_terminal();
    let write = |outs: &mut Vec<Output>, line: &Line| {
        let at = split.as_ref().map_or(0, |s| s.assign(&line.request_id));
        outs[at]
            .write(line)
            .map_err(|e| format!("cannot write: {e}"))
    };
    for (n, record) in records.enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(e) if e.kind() == StoreErrorKind::Json && args.skip_unreadable => {
                if counts.skipped_for(Skip::Unreadable) < UNREADABLE_NAMED {
                    eprintln!("warning: left out: {e}");
                }
                counts.skip(Skip::Unreadable);
                continue;
            }
            Err(e) => return Err(reading_failed(&e)),
        };
        let feedback = match joins_feedback {
            // The feedback of the record's own owner (another token's on a reused id is not
            // it), for that owner's last attempt only (it speaks of the answer the client got).
            true => match store
                .feedback(&record.id, record.owner)
                .map_err(|e| e.to_string())?
            {
                Some(f)
                    if store
                        .last_attempt(&record.id, record.owner)
                        .map_err(|e| e.to_string())?
                        == Some(record.attempt) =>
                {
                    Some(f)
                }
                _ => None,
            },
            false => None,
        };
        let line = match render(format, &record, feedback.as_ref(), options) {
            Ok(line) => line,
            Err(why) => {
                counts.skip(why);
                continue;
            }
        };
        if let (Some(d), Some(key)) = (&mut dedupe, &line.dedupe_key)
            && !d.first(key)
        {
            counts.skip(Skip::Duplicate);
            continue;
        }
        match &mut sample {
            Some(s) => s.offer(&line.id.clone(), line),
            None => write(&mut outs, &line)?,
        }
        if progress && n % 500 == 0 {
            eprint!("\rexporting… {n} records read");
        }
    }
    let mut report = String::new();
    if let Some(s) = sample {
        let offered = s.offered;
        for line in s.into_items() {
            write(&mut outs, &line)?;
        }
        report = format!(
            " (a sample of {offered} that could be written, seed {})",
            args.seed.unwrap_or(0)
        );
    }
    for o in &mut outs {
        o.finish().map_err(|e| format!("cannot write: {e}"))?;
    }
    if progress {
        eprint!("\r");
    }
    counts.written = outs.iter().map(|o| o.written).sum();
    let mut sentence = format!("{counts}");
    let at = sentence.find(';').unwrap_or(sentence.len());
    sentence.insert_str(at, &format!(" as {format}{report}"));
    if split.is_some() {
        let parts: Vec<String> = outs
            .iter()
            .map(|o| {
                let path = o.path.as_deref().map(Path::display);
                let name = o.name.as_deref().unwrap_or_default();
                match path {
                    Some(p) => format!("{name} {} to {p}", o.written),
                    None => format!("{name} {}", o.written),
                }
            })
            .collect();
        sentence.push_str(&format!(". Split: {}", parts.join(", ")));
    }
    Ok(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_are_named_by_split() {
        assert_eq!(
            split_path(Path::new("/d/out.jsonl"), "train"),
            Path::new("/d/out.train.jsonl")
        );
        assert_eq!(split_path(Path::new("ids"), "test"), Path::new("ids.test"));
    }
}
