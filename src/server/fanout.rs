//! Per-partition requests (Produce, Fetch, ListOffsets) name partitions that live on
//! different shards. A [`Fanout`] numbers the request's partitions in request order,
//! answers the ones it can at once (an unknown topic), groups the rest by owning shard,
//! runs each shard's group there, all at once, and hands the answers back in request order
//! for the response to be built.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use crate::shard::{Shard, ShardGone};

/// One request's partitions: `I` is what an owning shard needs to answer one, `A` the answer.
pub struct Fanout<I, A> {
    answers: Vec<Option<A>>,
    /// Per owning shard, the positions it answers and what it needs for each.
    parts: BTreeMap<usize, Vec<(usize, I)>>,
}

impl<I, A> Default for Fanout<I, A> {
    fn default() -> Self {
        Fanout {
            answers: Vec::new(),
            parts: BTreeMap::new(),
        }
    }
}

impl<I, A> Fanout<I, A>
where
    I: Clone + Send + 'static,
    A: Send + 'static,
{
    pub fn new() -> Self {
        Self::default()
    }

    /// The request's next partition, answered here and now.
    pub fn answer(&mut self, answer: A) {
        self.answers.push(Some(answer));
    }

    /// The request's next partition, to be answered by shard `owner` from `item`.
    pub fn route(&mut self, owner: usize, item: I) {
        let position = self.answers.len();
        self.answers.push(None);
        self.parts.entry(owner).or_default().push((position, item));
    }

    /// How many shards have partitions to answer.
    pub fn owner_count(&self) -> usize {
        self.parts.len()
    }

    /// Each owning shard and the items it answers.
    pub fn parts(&self) -> impl Iterator<Item = (usize, &[(usize, I)])> {
        self.parts
            .iter()
            .map(|(&owner, items)| (owner, items.as_slice()))
    }

    /// Runs `job(owner, items)` on every owning shard at once; each returns answers for
    /// the positions it was given (a position it leaves out keeps its earlier answer).
    /// May run again: Fetch polls until it has enough data.
    pub async fn run<F, Fut>(&mut self, shard: &Rc<Shard>, job: F) -> Result<(), ShardGone>
    where
        F: Fn(Rc<Shard>, Vec<(usize, I)>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Vec<(usize, A)>> + 'static,
    {
        self.run_where(shard, |_| true, job).await
    }

    /// Like [`Fanout::run`], on the owning shards `owners` picks only; the others' answers
    /// stay as they are (Fetch re-reads one part that could not fit its budget).
    pub async fn run_where<F, Fut>(
        &mut self,
        shard: &Rc<Shard>,
        owners: impl Fn(usize) -> bool,
        job: F,
    ) -> Result<(), ShardGone>
    where
        F: Fn(Rc<Shard>, Vec<(usize, I)>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Vec<(usize, A)>> + 'static,
    {
        let parts: Vec<(usize, Vec<(usize, I)>)> = self
            .parts
            .iter()
            .filter(|(&owner, _)| owners(owner))
            .map(|(&owner, items)| (owner, items.clone()))
            .collect();
        self.run_parts(shard, parts, job).await
    }

    /// Like [`Fanout::run`] for a request that runs its parts once (Produce, ListOffsets):
    /// the items move to their shards instead of being copied, and are gone afterwards.
    pub async fn run_once<F, Fut>(&mut self, shard: &Rc<Shard>, job: F) -> Result<(), ShardGone>
    where
        F: Fn(Rc<Shard>, Vec<(usize, I)>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Vec<(usize, A)>> + 'static,
    {
        let parts = std::mem::take(&mut self.parts).into_iter().collect();
        self.run_parts(shard, parts, job).await
    }

    async fn run_parts<F, Fut>(
        &mut self,
        shard: &Rc<Shard>,
        parts: Vec<(usize, Vec<(usize, I)>)>,
        job: F,
    ) -> Result<(), ShardGone>
    where
        F: Fn(Rc<Shard>, Vec<(usize, I)>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Vec<(usize, A)>> + 'static,
    {
        for (position, answer) in shard.run_on_each(parts, job).await?.into_iter().flatten() {
            debug_assert!(
                position < self.answers.len(),
                "an owner answered position {position} of a request of {}",
                self.answers.len()
            );
            if let Some(slot) = self.answers.get_mut(position) {
                *slot = Some(answer);
            }
        }
        Ok(())
    }

    /// The answer so far at `position` (in request order).
    pub fn answer_at(&self, position: usize) -> Option<&A> {
        self.answers.get(position)?.as_ref()
    }

    /// The answers the owning shards gave so far (not those answered here).
    pub fn routed_answers(&self) -> impl Iterator<Item = &A> {
        self.parts
            .values()
            .flatten()
            .filter_map(|(position, _)| self.answers.get(*position)?.as_ref())
    }

    /// The answers in request order; `missing` stands in for a position nobody answered
    /// (a shard that lost a part), so the response always has one entry per partition.
    pub fn into_answers(self, missing: impl Fn() -> A) -> impl Iterator<Item = A> {
        self.answers
            .into_iter()
            .map(move |answer| answer.unwrap_or_else(&missing))
    }
}
