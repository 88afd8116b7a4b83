//! How a pipeline runs its stages: one stage at a time, taken out of the
//! list while it runs (so that it may change the pipeline), its outputs
//! delivered when it returns.
//!
//! Inbound work is done nearest the handler first: a stage's outputs go
//! into the next stage's inbox, and the pipeline always runs the last
//! stage that has work. So each message reaches the handler before the
//! stages before it produce the next one, and a handler (or a stage) that
//! replaces a decoder mid-stream has the following bytes decoded by the
//! new one. Outbound work runs at once, from the writer towards the
//! transport, each stage in turn.

use std::any::TypeId;
use std::collections::VecDeque;
use std::rc::Rc;

use super::context::{Inbound, Link, Outbound, Outputs, StageContext};
use super::stage::{Directions, Stage, StageImpl};
use super::{into_bytes, Message, Pipeline, PipelineError};
use crate::codec::EncodeError;

/// A stage in its place.
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) name: String,
    /// `None` while the stage runs.
    pub(super) stage: Option<Box<dyn StageImpl>>,
    pub(super) directions: Directions,
    pub(super) type_name: &'static str,
    pub(super) types: Vec<TypeId>,
    /// Inbound signals waiting for the stage.
    pub(super) inbox: VecDeque<Inbound>,
    /// Writes that reached the stage while it was running.
    pub(super) outbox: VecDeque<Message>,
    /// Removed while it ran: the removal completes when it returns.
    pub(super) removing: bool,
    /// Taken out by `replace`: the new stage, now in its place, is the
    /// first its last writes go through.
    pub(super) replaced: bool,
}

impl Entry {
    fn is_live(&self) -> bool {
        !self.removing
    }
}

/// What [`Pipeline::step`] did.
pub(super) enum Step {
    /// A signal for the handler.
    Handler(Inbound),
    /// A stage ran.
    Ran,
    /// Nothing to do.
    Idle,
}

impl Pipeline {
    /// Runs `f` on the stage `id`, taken out of the list, and delivers
    /// what it passed on. `None` if the stage is gone, running, or the
    /// pipeline has no connection.
    pub(super) fn run_stage<R>(
        &self,
        id: u64,
        f: impl FnOnce(&mut dyn StageImpl, &mut StageContext<'_>) -> R,
    ) -> Option<R> {
        let (mut stage, name, link) = {
            let mut stages = self.inner.borrow_mut();
            let link = stages.link.clone()?;
            let entry = stages.entries.iter_mut().find(|e| e.id == id)?;
            (entry.stage.take()?, entry.name.clone(), link)
        };
        let mut out = Outputs::default();
        let result = {
            let mut ctx = StageContext {
                name: &name,
                link: &link,
                out: &mut out,
            };
            f(&mut *stage, &mut ctx)
        };
        self.put_back(id, stage, out, &link);
        Some(result)
    }

    /// Puts a stage back after it ran and delivers its outputs; completes
    /// its removal if it was removed meanwhile.
    fn put_back(&self, id: u64, stage: Box<dyn StageImpl>, out: Outputs, link: &Rc<Link>) {
        let mut stages = self.inner.borrow_mut();
        let Some(at) = stages.entries.iter().position(|e| e.id == id) else {
            return;
        };
        if stages.entries[at].removing {
            let mut entry = stages.entries.remove(at);
            drop(stages);
            entry.stage = Some(stage);
            self.deliver(at, at, out, link);
            self.finish_removal(at, entry);
            return;
        }
        let entry = &mut stages.entries[at];
        entry.stage = Some(stage);
        let waiting = std::mem::take(&mut entry.outbox);
        drop(stages);
        self.deliver(at + 1, at, out, link);
        for message in waiting {
            self.write_at(id, message);
        }
    }

    /// Delivers what a stage passed on: inbound signals to the stage at
    /// `next` (or the handler), outbound operations to the stages before
    /// position `below`.
    fn deliver(&self, next: usize, below: usize, out: Outputs, link: &Rc<Link>) {
        let Outputs {
            inbound,
            outbound,
            fatal,
        } = out;
        if !inbound.is_empty() || fatal {
            let mut stages = self.inner.borrow_mut();
            stages.fatal |= fatal;
            stages.push_inbound(next, inbound);
        }
        for operation in outbound {
            match operation {
                Outbound::Write(message) => {
                    if self.write_below(below, message, link).is_err() {
                        return;
                    }
                }
                Outbound::Read => self.read_below(below, link),
            }
        }
    }

    /// Completes the removal of `entry`, which was at `at`: the stage
    /// passes on what it holds, and that, then what waited for it, goes to
    /// the stage now at `at`; so do its writes if that stage replaced it
    /// (Netty links the old context to the new one both ways), else they
    /// go to the stages before.
    pub(super) fn finish_removal(&self, at: usize, mut entry: Entry) {
        let link = self.inner.borrow().link.clone();
        let mut out = Outputs::default();
        if let (Some(link), Some(stage)) = (&link, entry.stage.as_mut()) {
            let mut ctx = StageContext {
                name: &entry.name,
                link,
                out: &mut out,
            };
            stage.removed(&mut ctx);
        }
        out.inbound.extend(entry.inbox.drain(..));
        match &link {
            Some(link) => {
                // Writes that waited for the stage skip it now.
                for message in entry.outbox.drain(..) {
                    out.outbound.push(Outbound::Write(message));
                }
                let below = at + usize::from(entry.replaced);
                self.deliver(at, below, out, link);
            }
            None => self.inner.borrow_mut().push_inbound(at, out.inbound),
        }
    }

    /// Sends `message` through the stage `id` (one that was running when
    /// it came).
    fn write_at(&self, id: u64, message: Message) {
        let (at, link) = {
            let stages = self.inner.borrow();
            let Some(link) = stages.link.clone() else {
                return;
            };
            match stages.entries.iter().position(|e| e.id == id) {
                Some(at) => (at + 1, link),
                None => return,
            }
        };
        let _ = self.write_below(at, message, &link);
    }

    /// Sends `message` through the outbound stages before position `end`
    /// (exclusive), last to first, and then to the transport.
    ///
    /// # Errors
    ///
    /// A stage could not encode it: logged, and the connection closed.
    pub(super) fn write_below(
        &self,
        end: usize,
        message: Message,
        link: &Rc<Link>,
    ) -> Result<(), EncodeError> {
        let target = {
            let mut stages = self.inner.borrow_mut();
            let end = end.min(stages.entries.len());
            let found = stages.entries[..end]
                .iter()
                .rposition(|e| e.is_live() && e.directions.outbound);
            match found {
                Some(at) if stages.entries[at].stage.is_none() => {
                    // Running: it gets the write when it returns.
                    stages.entries[at].outbox.push_back(message);
                    return Ok(());
                }
                Some(at) => Some(stages.entries[at].id),
                None => None,
            }
        };
        let Some(id) = target else {
            return write_to_transport(link, message);
        };
        let result = self
            .run_stage(id, |stage, ctx| stage.write(ctx, message))
            .unwrap_or(Ok(()));
        if let Err(error) = &result {
            log::error!(
                "could not encode a message for {}: {error}",
                link.transport.peer()
            );
            link.transport.fail(error.to_string());
        }
        result
    }

    /// Passes a `read()` to the stages before position `end`, last to
    /// first, and then to the transport.
    pub(super) fn read_below(&self, end: usize, link: &Rc<Link>) {
        let target = {
            let stages = self.inner.borrow();
            let end = end.min(stages.entries.len());
            stages.entries[..end]
                .iter()
                .rposition(|e| e.is_live() && e.stage.is_some())
                .map(|at| stages.entries[at].id)
        };
        match target {
            Some(id) => {
                self.run_stage(id, |stage, ctx| stage.read(ctx));
            }
            None if !link.auto_read.get() => {
                link.demand.set(true);
                link.transport.resume_reading();
            }
            None => {}
        }
    }

    /// One unit of inbound work, nearest the handler first.
    pub(super) fn step(&self) -> Step {
        let (id, signal) = {
            let mut stages = self.inner.borrow_mut();
            if let Some(signal) = stages.to_handler.pop_front() {
                return Step::Handler(signal);
            }
            let mut work = None;
            for entry in stages.entries.iter_mut().rev() {
                let Some(stage) = &entry.stage else { continue };
                if stage.has_pending() {
                    work = Some((entry.id, None));
                    break;
                }
                if let Some(signal) = entry.inbox.pop_front() {
                    work = Some((entry.id, Some(signal)));
                    break;
                }
            }
            match work {
                Some(work) => work,
                None => return Step::Idle,
            }
        };
        let ran = match signal {
            None => self.run_stage(id, |stage, ctx| stage.produce(ctx)),
            Some(signal) => self.run_stage(id, |stage, ctx| stage.inbound(ctx, signal)),
        };
        if ran.is_none() {
            // No connection: nothing can run.
            return Step::Idle;
        }
        Step::Ran
    }

    /// Calls `f` on every stage, first to last (`connection_made`,
    /// `connection_lost`, ...), delivering what each passes on.
    pub(super) fn for_each_stage(&self, f: impl Fn(&mut dyn StageImpl, &mut StageContext<'_>)) {
        let ids: Vec<u64> = self.inner.borrow().entries.iter().map(|e| e.id).collect();
        for id in ids {
            self.run_stage(id, &f);
        }
    }

    /// [`for_each_stage`](Self::for_each_stage) last to first: the
    /// teardown's `handler_removed`, tail to head as Netty's.
    pub(super) fn for_each_stage_from_last(
        &self,
        f: impl Fn(&mut dyn StageImpl, &mut StageContext<'_>),
    ) {
        let ids: Vec<u64> = self.inner.borrow().entries.iter().map(|e| e.id).collect();
        for id in ids.into_iter().rev() {
            self.run_stage(id, &f);
        }
    }

    /// Adds `stage` at `at` under `name` (else a generated one), calling
    /// its `handler_added` if the pipeline runs on a connection.
    pub(super) fn insert_entry(
        &self,
        at: impl FnOnce(&[Entry]) -> Result<usize, PipelineError>,
        name: Option<String>,
        stage: Stage,
    ) -> Result<String, PipelineError> {
        let (id, name, link) = {
            let mut stages = self.inner.borrow_mut();
            // A given name was checked by the caller.
            let name = match name {
                Some(name) => name,
                None => stages.generate_name(&stage),
            };
            let at = at(&stages.entries)?;
            stages.next_id += 1;
            let id = stages.next_id;
            let Stage {
                kind,
                directions,
                type_name,
                types,
            } = stage;
            stages.entries.insert(
                at,
                Entry {
                    id,
                    name: name.clone(),
                    stage: Some(kind),
                    directions,
                    type_name,
                    types,
                    inbox: VecDeque::new(),
                    outbox: VecDeque::new(),
                    removing: false,
                    replaced: false,
                },
            );
            (id, name, stages.link.clone())
        };
        if link.is_some() {
            self.run_stage(id, |stage, ctx| stage.added(ctx));
        }
        Ok(name)
    }
}

/// Writes bytes that reached the head of the pipeline.
fn write_to_transport(link: &Link, message: Message) -> Result<(), EncodeError> {
    match into_bytes(message) {
        Ok(bytes) => {
            link.transport.write(bytes);
            Ok(())
        }
        Err(_) => {
            let error = EncodeError::Other(
                "a message that is not bytes reached the head of the pipeline".into(),
            );
            log::error!("{error} for {}", link.transport.peer());
            link.transport.fail(error.to_string());
            Err(error)
        }
    }
}
