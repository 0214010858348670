//! One node of the metadata quorum on the controller shard: one task runs the sans-I/O
//! consensus (`core::QuorumCore`, raft-rs inside) with real I/O around it. It ticks it on
//! a timer, feeds it peers' messages and proposals, makes its journal writes durable
//! (`Journal`) before it finishes each `Ready`, and sends what it asks to send
//! (`Transport`). Other tasks see the node through [`QuorumNode`]: its status, proposals,
//! and waits for a status.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use raft::eraftpb::Message;

use super::core::{QuorumCore, QuorumError, QuorumSettings, QuorumStatus, StateMachine};
use super::journal::{Journal, JournalError};
use super::store::StoreCore;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::time::{self, Deadline};

/// Sends Raft messages to peers; never waits (a message that cannot be queued is dropped,
/// which Raft tolerates: it retries appends and heartbeats).
pub trait Transport {
    fn send(&self, message: Message);
}

enum Input {
    Raft(Message),
    Propose {
        data: Bytes,
        done: oneshot::Sender<Result<u64, QuorumError>>,
    },
}

/// Inputs queued for the loop; more are dropped (peers retry) or refused (proposals).
const INBOX_CAPACITY: usize = 4096;
/// Inputs taken from the inbox before the loop persists once for all of them.
const INPUTS_PER_ROUND_MAX: usize = 256;

pub struct QuorumNode {
    settings: QuorumSettings,
    inbox: async_channel::Sender<Input>,
    status: Cell<QuorumStatus>,
    /// Proposals handed to the loop that it has not answered yet, whether or not their
    /// callers still wait: one whose caller timed out may still be queued, or in the log,
    /// and commit. The node is not settled while any is (`status`).
    proposals_unanswered: Cell<u64>,
    /// Fired after every applied batch of entries and every status change.
    changed: event_listener::Event,
}

/// Everything only the loop touches.
struct Driver<M, T> {
    node: Rc<QuorumNode>,
    core: QuorumCore<M>,
    journal: Journal,
    transport: T,
    /// Callers of this node's proposals, by proposal id.
    waiting: HashMap<u64, oneshot::Sender<Result<u64, QuorumError>>>,
}

impl QuorumNode {
    /// Starts the node on the current shard from the journal's replayed state `core`
    /// (for a new quorum, the initial configuration as its snapshot). Applies the
    /// snapshot and the committed entries the journal holds before returning, so the
    /// state machine reflects everything this node knew before it stopped.
    pub fn start<M, T>(
        settings: QuorumSettings,
        journal: Journal,
        core: StoreCore,
        machine: M,
        transport: T,
        shutdown: Rc<Shutdown>,
    ) -> Result<(Rc<QuorumNode>, async_channel::Receiver<()>), QuorumError>
    where
        M: StateMachine + 'static,
        T: Transport + 'static,
    {
        let core = QuorumCore::new(settings.clone(), core, machine)?;
        let (sender, receiver) = async_channel::bounded(INBOX_CAPACITY);
        let node = Rc::new(QuorumNode {
            settings,
            inbox: sender,
            status: Cell::new(core.status()),
            proposals_unanswered: Cell::new(0),
            changed: event_listener::Event::new(),
        });
        let mut driver = Driver {
            node: node.clone(),
            core,
            journal,
            transport,
            waiting: HashMap::new(),
        };
        let (stopped_tx, stopped_rx) = async_channel::bounded(1);
        crate::runtime::spawn(async move {
            driver.run(receiver, shutdown).await;
            driver.journal.close().await;
            drop(stopped_tx);
        })
        .detach();
        Ok((node, stopped_rx))
    }

    pub fn id(&self) -> u64 {
        self.settings.node_id
    }

    pub fn status(&self) -> QuorumStatus {
        let mut status = self.status.get();
        status.settled &= self.proposals_unanswered.get() == 0;
        status
    }

    /// Hands a peer's message to the node; dropped if the node is far behind.
    pub fn receive(&self, message: Message) {
        let _ = self.inbox.try_send(Input::Raft(message));
    }

    /// Proposes `data` and returns its index once it is committed and applied here.
    /// Only the leader proposes; others get `NotLeader`.
    pub async fn propose(&self, data: Bytes) -> Result<u64, QuorumError> {
        let (done, answer) = oneshot::channel();
        self.inbox
            .try_send(Input::Propose { data, done })
            .map_err(|_| QuorumError::Timeout)?;
        self.proposals_unanswered
            .set(self.proposals_unanswered.get() + 1);
        match time::timeout(self.settings.proposal_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QuorumError::Stopped),
            Err(time::Elapsed) => Err(QuorumError::Timeout),
        }
    }

    /// Waits until the status satisfies `ready`, up to `timeout`; returns the last status.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&QuorumStatus) -> bool,
    ) -> Result<QuorumStatus, QuorumStatus> {
        let deadline = Deadline::after(timeout);
        time::wait_until(&self.changed, deadline, || {
            let status = self.status();
            ready(&status).then_some(status)
        })
        .await
        .map_err(|_| self.status())
    }
}

impl<M: StateMachine, T: Transport> Driver<M, T> {
    async fn run(&mut self, inbox: async_channel::Receiver<Input>, shutdown: Rc<Shutdown>) {
        let tick = self.node.settings.tick;
        let mut next_tick = time::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(time::now());
            let input = shutdown.or_stopped(time::timeout(wait, inbox.recv())).await;
            match input {
                None | Some(Ok(Err(_))) => break, // shutdown, or every sender gone
                Some(Ok(Ok(input))) => {
                    self.handle(input);
                    // Take whatever else is queued before persisting once for all of it.
                    for _ in 0..INPUTS_PER_ROUND_MAX {
                        match inbox.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                Some(Err(time::Elapsed)) => {}
            }
            if time::now() >= next_tick {
                self.core.tick();
                next_tick += tick;
                if next_tick < time::now() {
                    next_tick = time::now() + tick;
                }
            }
            if let Err(error) = self.drive_ready().await {
                // The journal failed: this node can no longer promise anything it votes
                // or acknowledges. Stop it; the others carry on without it.
                tracing::error!(%error, "metadata journal failed; the quorum node stops");
                break;
            }
            self.publish();
        }
        for (proposal, result) in self.core.stop() {
            if let Some(done) = self.waiting.remove(&proposal) {
                self.answer(done, result);
            }
        }
        for (_, done) in std::mem::take(&mut self.waiting) {
            self.answer(done, Err(QuorumError::Stopped));
        }
    }

    /// Answers one of this node's proposals (its caller may have stopped waiting).
    fn answer(
        &self,
        done: oneshot::Sender<Result<u64, QuorumError>>,
        result: Result<u64, QuorumError>,
    ) {
        let _ = done.send(result);
        let unanswered = self.node.proposals_unanswered.get().saturating_sub(1);
        self.node.proposals_unanswered.set(unanswered);
        if unanswered == 0 {
            self.node.changed.notify(usize::MAX);
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(message) => self.core.step(message),
            Input::Propose { data, done } => match self.core.propose(&data) {
                Ok(proposal) => {
                    self.waiting.insert(proposal, done);
                }
                Err(error) => self.answer(done, Err(error)),
            },
        }
    }

    /// One `Ready`, in the order `QuorumCore` documents: what may go at once, the writes
    /// made durable, then the rest.
    async fn drive_ready(&mut self) -> Result<(), JournalError> {
        let Some(mut round) = self.core.begin_ready() else {
            return Ok(());
        };
        self.send(std::mem::take(&mut round.messages));
        for write in std::mem::take(&mut round.writes) {
            self.journal.write(write).await?;
        }
        let finished = self.core.finish_ready(round);
        // Visible at once: a controller answering right after its proposal applied names
        // an index its callers wait for.
        self.publish();
        self.send(finished.messages);
        for write in finished.writes {
            self.journal.write(write).await?;
        }
        Ok(())
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }

    /// Publishes the status, then answers the proposals applied or failed meanwhile.
    fn publish(&mut self) {
        let status = self.core.status();
        let previous = self.node.status.get();
        if status != previous {
            if status.leader != previous.leader {
                tracing::info!(
                    node = self.node.settings.node_id,
                    leader = status.leader,
                    term = status.term,
                    "metadata quorum leader changed"
                );
            }
            self.node.status.set(status);
            self.node.changed.notify(usize::MAX);
        }
        for (proposal, result) in self.core.take_completed() {
            if let Some(done) = self.waiting.remove(&proposal) {
                self.answer(done, result);
            }
        }
    }
}
