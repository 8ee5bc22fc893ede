//! What a request hands the capture writer (an entry, or a record still to be built on the
//! writer's side), and how the writer's threads build, prepare and account for it.

use super::recorder::Pending;
use super::size::estimate;
use super::spill;
use super::writer_config::Prepare;
use crate::config::Owner;
use crate::store::Entry;

/// What requests hand the writer: an entry, or a record still to be built on the thread.
pub(crate) enum Item {
    Entry(Entry),
    Pending(Box<Pending>),
}

/// Why an entry whose building or redaction panicked is dropped.
pub(crate) const PANICKED: &str = "building or redacting the record panicked";

impl Item {
    /// Builds and prepares (redacts) the entry. A panic there is a defect, and it costs this entry
    /// only, not the thread and every entry it holds: `Err` carries what counting the drop and
    /// settling the id need (the panic itself is reported by the panic hook).
    pub(crate) fn prepared(self, prepare: &Prepare) -> Result<Entry, spill::Mark> {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        match self {
            Item::Entry(mut entry) => {
                match catch_unwind(AssertUnwindSafe(|| prepare.apply(&mut entry))) {
                    Ok(()) => Ok(entry),
                    Err(_) => Err(spill::Mark::of(&entry)),
                }
            }
            Item::Pending(pending) => {
                let (id, owner) = (pending.shared_id(), pending.owner());
                let max = pending.max_body();
                catch_unwind(AssertUnwindSafe(move || {
                    let mut entry = Entry::Record(Box::new(pending.build()));
                    prepare.apply(&mut entry);
                    // Cut once redacted: a secret across the cut was replaced whole first.
                    if let Entry::Record(record) = &mut entry {
                        super::cut::request(record, max);
                    }
                    entry
                }))
                .map_err(|_| spill::Mark {
                    id: id.to_string(),
                    record: Some(owner),
                })
            }
        }
    }

    /// What counting this entry as dropped and settling its id need, without building it.
    pub(crate) fn mark(&self) -> spill::Mark {
        match self {
            Item::Entry(entry) => spill::Mark::of(entry),
            Item::Pending(pending) => spill::Mark {
                id: pending.id().to_owned(),
                record: Some(pending.owner()),
            },
        }
    }

    pub(crate) fn size(&self) -> usize {
        match self {
            Item::Entry(e) => estimate(e),
            Item::Pending(p) => p.size_estimate(),
        }
    }

    /// The record's id and owner, for "is this id known" while it waits.
    pub(crate) fn record_key(&self) -> Option<(&str, Option<Owner>)> {
        match self {
            Item::Entry(Entry::Record(r)) => Some((&r.id, r.owner)),
            Item::Pending(p) => Some((p.id(), p.owner())),
            Item::Entry(_) => None,
        }
    }
}
