//! The spill: append-only JSONL segment files where capture entries wait while the store is
//! unavailable (or the queue is full), replayed oldest first once the store works again.
//!
//! A segment is `spill-<20-digit sequence>.jsonl`; each line is one [`Entry`] as JSON.
//! **Invariant**: a segment is deleted only after every entry in it is committed to the store;
//! replaying a segment twice is harmless because the store ignores a second `(id, attempt)`.
//! **Invariant**: the bytes of all segments never exceed the configured cap; an entry that
//! would pass it is refused (the caller counts and logs the drop).

use crate::config::Owner;
use crate::store::Entry;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One segment file.
struct Segment {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    /// Open for appending while this is the current segment, and until its data is synced.
    file: Option<File>,
    /// Appended to since the last sync.
    dirty: bool,
}

/// The spill directory's state; shared behind a mutex by the writer thread and by `submit`
/// when the queue is full. Holders do only short writes under the lock, never an fsync.
pub(crate) struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    next_seq: u64,
    /// Oldest first; the last one is the current segment when it has an open file and is not
    /// closed for replay.
    segments: VecDeque<Segment>,
    /// The last segment takes appends.
    current_open: bool,
    total_bytes: u64,
    /// A segment file was created since the directory was last synced.
    dir_dirty: bool,
}

/// What [`Spill::sync_handles`] hands out: files to fsync outside the lock.
pub(crate) struct SyncWork {
    files: Vec<File>,
    dir: Option<PathBuf>,
}

impl SyncWork {
    pub(crate) fn run(self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A closed segment to replay.
pub(crate) struct Closed {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
}

impl Spill {
    /// Opens (creating) `dir` and finds the segments a previous run left behind.
    pub(crate) fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_prefix("spill-"))
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push(Segment {
                seq,
                path: item.path(),
                bytes: item.metadata()?.len(),
                file: None,
                dirty: false,
            });
        }
        found.sort_by_key(|s| s.seq);
        let next_seq = found.last().map_or(1, |s| s.seq + 1);
        let total_bytes = found.iter().map(|s| s.bytes).sum();
        Ok(Spill {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            next_seq,
            segments: found.into(),
            current_open: false,
            total_bytes,
            dir_dirty: false,
        })
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends the lines that fit under the cap, in one write; `accepted[i]` tells whether
    /// line `i` was written.
    pub(crate) fn append(&mut self, lines: &Lines) -> io::Result<Vec<bool>> {
        let mut total = self.total_bytes;
        let accepted: Vec<bool> = lines
            .iter()
            .map(|line| {
                let len = line.len() as u64;
                let fits = total.saturating_add(len) <= self.max_bytes;
                if fits {
                    total += len;
                }
                fits
            })
            .collect();
        // Usually every line fits, and the encoded batch is written as it is.
        let buffer: Cow<'_, [u8]> = if accepted.iter().all(|a| *a) {
            Cow::Borrowed(&lines.bytes)
        } else {
            Cow::Owned(
                lines
                    .iter()
                    .zip(&accepted)
                    .filter(|(_, fits)| **fits)
                    .flat_map(|(line, _)| line.iter().copied())
                    .collect(),
            )
        };
        if buffer.is_empty() {
            return Ok(accepted);
        }
        if !self.current_open
            || self
                .segments
                .back()
                .is_none_or(|s| s.bytes >= self.segment_bytes)
        {
            self.start_segment()?;
        }
        let Some(segment) = self.segments.back_mut() else {
            return Err(io::Error::other("spill segment vanished"));
        };
        let written = match segment.file.as_mut() {
            Some(file) => file.write_all(&buffer),
            None => Err(io::Error::other("spill segment is not open")),
        };
        // Even a failed write may have put part of the buffer in the file: then count the
        // file's real length, and start a fresh segment next time so a torn line stays the last
        // one. A whole write adds exactly the buffer (no `statx` per write).
        let len = match &written {
            Ok(()) => segment.bytes + buffer.len() as u64,
            Err(_) => fs::metadata(&segment.path).map_or(segment.bytes, |m| m.len()),
        };
        self.total_bytes = self.total_bytes.saturating_sub(segment.bytes) + len;
        segment.bytes = len;
        segment.dirty = true;
        match written {
            Ok(()) => Ok(accepted),
            Err(e) => {
                self.current_open = false;
                Err(e)
            }
        }
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        let path = self.dir.join(format!("spill-{seq:020}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.next_seq += 1;
        self.segments.push_back(Segment {
            seq,
            path,
            bytes: 0,
            file: Some(file),
            dirty: false,
        });
        self.current_open = true;
        self.dir_dirty = true;
        Ok(())
    }

    /// Handles of every file (and the directory) written since the last call; the caller
    /// fsyncs them after releasing the lock.
    pub(crate) fn sync_handles(&mut self) -> io::Result<SyncWork> {
        let mut files = Vec::new();
        let last = self.segments.len().saturating_sub(1);
        let current_open = self.current_open;
        for (index, segment) in self.segments.iter_mut().enumerate() {
            if segment.dirty
                && let Some(file) = &segment.file
            {
                files.push(file.try_clone()?);
                segment.dirty = false;
            }
            if !(current_open && index == last) {
                segment.file = None;
            }
        }
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        Ok(SyncWork { files, dir })
    }

    /// Closes the current segment so that no more appends go to it, and lists every segment,
    /// oldest first, for replay. Appends made after this start a new segment.
    pub(crate) fn close_for_replay(&mut self) -> Vec<Closed> {
        self.current_open = false;
        self.segments
            .iter()
            .map(|s| Closed {
                seq: s.seq,
                path: s.path.clone(),
            })
            .collect()
    }

    /// Deletes a replayed segment.
    pub(crate) fn remove(&mut self, seq: u64) -> io::Result<()> {
        let Some(index) = self.segments.iter().position(|s| s.seq == seq) else {
            return Ok(());
        };
        let Some(segment) = self.segments.remove(index) else {
            return Ok(());
        };
        self.total_bytes = self.total_bytes.saturating_sub(segment.bytes);
        match fs::remove_file(&segment.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Reads a segment's entries in chunks of at most `chunk` entries. Lines that are not valid
/// entries (a write torn by a crash) are counted in `bad` and skipped.
pub(crate) struct SegmentReader {
    lines: io::Split<BufReader<File>>,
    chunk: usize,
    pub(crate) bad: u64,
}

impl SegmentReader {
    pub(crate) fn open(path: &Path, chunk: usize) -> io::Result<SegmentReader> {
        Ok(SegmentReader {
            lines: BufReader::new(File::open(path)?).split(b'\n'),
            chunk: chunk.max(1),
            bad: 0,
        })
    }

    /// The next chunk; empty at the end of the segment.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        while out.len() < self.chunk {
            match self.lines.next() {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(line)) if line.trim_ascii().is_empty() => {}
                Some(Ok(line)) => match serde_json::from_slice(&line) {
                    Ok(entry) => out.push(entry),
                    Err(_) => self.bad += 1,
                },
            }
        }
        Ok(out)
    }
}

/// What is left of an entry once it is encoded: its id, to log it if the spill refuses its line,
/// and for a record its owner, to settle the id.
pub(crate) struct Mark {
    pub(crate) id: String,
    /// `Some(owner)` for a record (its id is pending until stored or dropped).
    pub(crate) record: Option<Option<Owner>>,
}

impl Mark {
    /// `entry`'s mark, taking its id (the entry is dropped next).
    fn take(entry: &mut Entry) -> Mark {
        match entry {
            Entry::Record(r) => Mark {
                id: std::mem::take(&mut r.id),
                record: Some(r.owner),
            },
            Entry::ClientTimings(t) => Mark {
                id: std::mem::take(&mut t.id),
                record: None,
            },
            Entry::Feedback(f) => Mark {
                id: std::mem::take(&mut f.id),
                record: None,
            },
        }
    }

    /// A record's id and owner (`None` for a beacon's entry), as the pending ids take them.
    pub(crate) fn record_key(&self) -> Option<(&str, Option<Owner>)> {
        self.record.map(|owner| (self.id.as_str(), owner))
    }

    /// `entry`'s mark, copying its id.
    pub(crate) fn of(entry: &Entry) -> Mark {
        Mark {
            id: entry.id().to_owned(),
            record: match entry {
                Entry::Record(r) => Some(r.owner),
                Entry::ClientTimings(_) | Entry::Feedback(_) => None,
            },
        }
    }
}

/// Entries encoded for one spill write, each dropped as soon as it is encoded and kept only as
/// its [`Mark`]. Encoding one entry at a time keeps the working set to one record: at
/// saturation, a batch of built records held until the write missed the cache on nearly every
/// allocation (perf: a fifth of the overflow thread's time was one load in the allocator).
#[derive(Default)]
pub(crate) struct Encoded {
    pub(crate) lines: Lines,
    /// One per line of `lines`, in order.
    pub(crate) marks: Vec<Mark>,
    /// Entries serde could not encode (no line).
    pub(crate) unencodable: Vec<Mark>,
}

impl Encoded {
    /// Encodes `entry` and drops it.
    pub(crate) fn push(&mut self, mut entry: Entry) {
        match self.lines.push(&entry) {
            Ok(()) => self.marks.push(Mark::take(&mut entry)),
            Err(error) => {
                tracing::error!(%error, id = entry.id(), "capture entry cannot be encoded");
                self.unencodable.push(Mark::take(&mut entry));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.marks.len() + self.unencodable.len()
    }
}

/// The most buffer capacity [`Lines::clear`] keeps: a batch of ordinary records fits.
const KEEP_BYTES: usize = 1 << 20;

/// Spill lines (one entry each, JSON ended by `\n`) encoded back to back in one buffer: one
/// growing allocation per batch instead of one per line.
#[derive(Default)]
pub(crate) struct Lines {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
}

impl Lines {
    /// Encodes `entry` as one more line; on an error nothing is added.
    pub(crate) fn push(&mut self, entry: &Entry) -> serde_json::Result<()> {
        let start = self.bytes.len();
        let written = match entry {
            // The tagged form serde writes for a record, around the record written by hand
            // (`record::json`: the same bytes, cheaper).
            Entry::Record(record) => {
                self.bytes
                    .extend_from_slice(b"{\"kind\":\"record\",\"data\":");
                let written = crate::record::json::write(&mut self.bytes, record);
                self.bytes.push(b'}');
                written
            }
            _ => serde_json::to_writer(&mut self.bytes, entry),
        };
        match written {
            Ok(()) => {
                self.bytes.push(b'\n');
                self.ends.push(self.bytes.len());
                Ok(())
            }
            Err(error) => {
                self.bytes.truncate(start);
                Err(error)
            }
        }
    }

    /// Empties the buffer, keeping its capacity up to [`KEEP_BYTES`] (a burst of large records
    /// does not hold its memory afterwards).
    pub(crate) fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_BYTES {
            *self = Lines::default();
        } else {
            self.bytes.clear();
            self.ends.clear();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| self.bytes.get(start..end).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::ClientTimings;

    fn entry(id: &str, pad: usize) -> Entry {
        Entry::ClientTimings(ClientTimings {
            id: id.to_owned(),
            timings: serde_json::json!({ "pad": "x".repeat(pad) }),
            owner: None,
        })
    }

    fn written(dir: &Path) -> String {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }

    #[test]
    fn encoded_entries_keep_their_ids_in_the_lines_and_in_their_marks() {
        let record: Entry = serde_json::from_value(serde_json::json!({ "kind": "record", "data": {
            "id": "r1", "attempt": 1, "started_at_ms": 0, "route": "r", "api": "openai",
            "model": null, "method": "POST", "path": "/v1/chat/completions",
            "client_status": 200, "upstream_status": 200, "streamed": false, "tier": "off",
            "outcome": "ok", "partial": false, "capture": "full", "timings": {},
            "usage": null, "upstream_timings": null, "request": null, "response": null,
            "deltas": [], "error": null, "truncated": false
        }}))
        .unwrap();
        let mut encoded = Encoded::default();
        encoded.push(entry("t1", 5));
        encoded.push(record);
        assert_eq!(encoded.len(), 2);
        // The marks took the ids after the lines were encoded with them.
        let marks: Vec<(&str, bool)> = encoded
            .marks
            .iter()
            .map(|m| (m.id.as_str(), m.record.is_some()))
            .collect();
        assert_eq!(marks, [("t1", false), ("r1", true)]);
        let ids: Vec<String> = encoded
            .lines
            .iter()
            .map(|l| serde_json::from_slice::<Entry>(l).unwrap().id().to_owned())
            .collect();
        assert_eq!(ids, ["t1", "r1"]);
    }

    #[test]
    fn a_record_s_line_is_the_line_serde_writes_for_its_entry() {
        let mut record = crate::record::CaptureRecord::minimal("r\"1");
        record.error = Some("line\nbreak".into());
        let entries = [
            Entry::Record(Box::new(record)),
            entry("t1", 3),
            Entry::Feedback(crate::store::Feedback::default()),
        ];
        let mut lines = Lines::default();
        for e in &entries {
            lines.push(e).unwrap();
        }
        let ours: Vec<&[u8]> = lines.iter().collect();
        let theirs: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| {
                let mut line = serde_json::to_vec(e).unwrap();
                line.push(b'\n');
                line
            })
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_cleared_buffer_keeps_an_ordinary_batch_s_capacity_only() {
        let mut lines = Lines::default();
        lines.push(&entry("a", 100)).unwrap();
        let kept = lines.bytes.capacity();
        lines.clear();
        assert!(lines.iter().next().is_none());
        assert_eq!(
            lines.bytes.capacity(),
            kept,
            "an ordinary batch's buffer is kept"
        );
        lines.push(&entry("big", KEEP_BYTES)).unwrap();
        lines.clear();
        assert_eq!(
            lines.bytes.capacity(),
            0,
            "a burst's large buffer is let go"
        );
    }

    #[test]
    fn a_batch_writes_every_line_that_fits_under_the_cap_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Lines::default();
        for (id, pad) in [("a", 10), ("b", 200), ("c", 10)] {
            lines.push(&entry(id, pad)).unwrap();
        }
        let sizes: Vec<usize> = lines.iter().map(<[u8]>::len).collect();
        // Room for the first and the third line, not for the second.
        let cap = (sizes[0] + sizes[2]) as u64;
        let mut spill = Spill::open(dir.path(), cap, 1 << 20).unwrap();
        assert_eq!(spill.append(&lines).unwrap(), vec![true, false, true]);
        assert_eq!(spill.total_bytes(), cap);
        let text = written(dir.path());
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Entry>(l).unwrap().id().to_owned())
            .collect();
        assert_eq!(ids, ["a", "c"], "{text}");

        // With room for all, the batch is written as encoded.
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(spill.append(&lines).unwrap(), vec![true; 3]);
        assert_eq!(written(dir.path()).as_bytes(), lines.bytes.as_slice());
    }
}
