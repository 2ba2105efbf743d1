//! Fixed storage for the attempts in flight, addressed by generation-checked ids.

use alloc::vec::Vec;

use super::{AttemptId, AttemptPhase};
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

#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    attempt: Option<Attempt>,
}

/// `capacity` slots allocated once; a slot's generation moves on each time it is emptied, so
/// an id kept after its attempt ended never reaches the next one.
#[derive(Clone, Debug)]
pub(super) struct Attempts {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Attempts {
    /// Storage for `capacity` attempts; `capacity` fits in a `u32` (the config checks it).
    pub(super) fn with_capacity(capacity: usize) -> Attempts {
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, || Slot {
            generation: 0,
            attempt: None,
        });
        let free = (0..capacity as u32).rev().collect();
        Attempts { slots, free }
    }

    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub(super) fn insert(&mut self, attempt: Attempt) -> Option<AttemptId> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        slot.attempt = Some(attempt);
        Some(AttemptId {
            index,
            generation: slot.generation,
        })
    }

    pub(super) fn get_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.attempt.as_mut()
    }

    pub(super) fn remove(&mut self, id: AttemptId) -> Option<Attempt> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let attempt = slot.attempt.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        Some(attempt)
    }

    /// Removes the attempt in slot `index` if `condition` holds for it.
    pub(super) fn remove_at_if(
        &mut self,
        index: usize,
        condition: impl FnOnce(&Attempt) -> bool,
    ) -> Option<(AttemptId, Attempt)> {
        let slot = self.slots.get(index)?;
        let id = AttemptId {
            index: index as u32,
            generation: slot.generation,
        };
        if !condition(slot.attempt.as_ref()?) {
            return None;
        }
        self.remove(id).map(|attempt| (id, attempt))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (AttemptId, &Attempt)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let attempt = slot.attempt.as_ref()?;
            Some((
                AttemptId {
                    index: index as u32,
                    generation: slot.generation,
                },
                attempt,
            ))
        })
    }

    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        self.iter().map(|(_, attempt)| attempt.deadline).min()
    }
}
