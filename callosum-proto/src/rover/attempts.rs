//! Fixed storage for the attempts in flight, addressed by generation-checked ids.

use super::{AttemptId, AttemptPhase};
use crate::slab::Slab;
use crate::{Decoder, Instant, ServerId};

/// One attempt in flight.
#[derive(Clone, Debug)]
pub(super) struct Attempt {
    pub(super) server: ServerId,
    pub(super) phase: AttemptPhase,
    pub(super) deadline: Instant,
    /// Never done nor failed while stored: the attempt ends with its line.
    pub(super) decoder: Decoder,
}

/// A slab bounded by `max_in_flight`, so attempt indices stay below it; an id kept after its
/// attempt ended is stale and reaches no later attempt.
#[derive(Clone, Debug)]
pub(super) struct Attempts {
    slab: Slab<Attempt>,
}

impl Attempts {
    /// Storage for `capacity` attempts, allocated now.
    pub(super) fn with_capacity(capacity: usize) -> Attempts {
        Attempts {
            slab: Slab::bounded(capacity),
        }
    }

    /// Whether `capacity` attempts are in flight.
    pub(super) fn is_full(&self) -> bool {
        self.slab.is_full()
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Every index an attempt has used, for sweeps that remove attempts as they go.
    pub(super) fn indices(&self) -> core::ops::Range<u32> {
        // The slab numbers fewer than u32::MAX entries.
        0..self.slab.footprint() as u32
    }

    pub(super) fn insert(&mut self, attempt: Attempt) -> Option<AttemptId> {
        self.slab.insert(attempt).ok().map(AttemptId)
    }

    pub(super) fn get_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.slab.get_mut(id.0)
    }

    pub(super) fn remove(&mut self, id: AttemptId) -> Option<Attempt> {
        self.slab.remove(id.0)
    }

    /// Removes the attempt at `index` if `condition` holds for it.
    pub(super) fn remove_at_if(
        &mut self,
        index: u32,
        condition: impl FnOnce(&Attempt) -> bool,
    ) -> Option<(AttemptId, Attempt)> {
        let (key, attempt) = self.slab.get_by_index(index)?;
        if !condition(attempt) {
            return None;
        }
        self.slab
            .remove(key)
            .map(|attempt| (AttemptId(key), attempt))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (AttemptId, &Attempt)> + '_ {
        self.slab
            .iter()
            .map(|(key, attempt)| (AttemptId(key), attempt))
    }

    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        self.iter().map(|(_, attempt)| attempt.deadline).min()
    }
}
