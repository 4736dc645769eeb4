//! The simulated SIM message store and the network's queue in front of it.
//!
//! A real SIM holds a few dozen messages. When it is full the network keeps the messages it
//! could not deliver and retries later; the simulator models that with a queue that drains into
//! free slots as soon as the client deletes something. Nothing injected is ever dropped, so a
//! test can check that the driver ends up with every message.

use std::collections::VecDeque;

/// `<stat>` of 27.005 in PDU mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    RecUnread = 0,
    RecRead = 1,
    StoUnsent = 2,
    StoSent = 3,
}

impl Stat {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The text-mode name used by +CMGL/+CMGR when AT+CMGF=1.
    pub fn text(self) -> &'static str {
        match self {
            Stat::RecUnread => "REC UNREAD",
            Stat::RecRead => "REC READ",
            Stat::StoUnsent => "STO UNSENT",
            Stat::StoSent => "STO SENT",
        }
    }
}

/// One stored message: its PDU as the modem prints it (SMSC field included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub stat: Stat,
    pub pdu: String,
}

/// Message slots plus the network queue. Indices given to and taken from the client are offset
/// by `first_index` (1 on most modems, 0 on Quectel).
#[derive(Debug)]
pub struct Storage {
    slots: Vec<Option<Stored>>,
    queue: VecDeque<String>,
    first_index: usize,
}

impl Storage {
    pub fn new(size: usize, first_index: usize) -> Self {
        Self { slots: vec![None; size], queue: VecDeque::new(), first_index }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn used(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Stores a delivered PDU in the first free slot and returns its client-visible index, or
    /// queues it in the network when the store is full (returns None). Messages already waiting
    /// in the queue go first, so delivery order is kept.
    pub fn deliver(&mut self, pdu: String) -> Option<usize> {
        if !self.queue.is_empty() {
            self.queue.push_back(pdu);
            return None;
        }
        self.put(pdu)
    }

    /// Puts a PDU straight into a slot, or the queue if full.
    fn put(&mut self, pdu: String) -> Option<usize> {
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = Some(Stored { stat: Stat::RecUnread, pdu });
                }
                Some(i + self.first_index)
            }
            None => {
                self.queue.push_back(pdu);
                None
            }
        }
    }

    /// Moves queued messages into free slots; returns the indices that were filled.
    pub fn drain_queue(&mut self) -> Vec<usize> {
        let mut filled = Vec::new();
        while self.used() < self.capacity() {
            let Some(pdu) = self.queue.pop_front() else {
                break;
            };
            if let Some(i) = self.put(pdu) {
                filled.push(i);
            }
        }
        filled
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Option<Stored>> {
        let i = index.checked_sub(self.first_index)?;
        self.slots.get_mut(i)
    }

    /// Whether `index` names a slot at all (valid index), filled or not.
    pub fn valid_index(&self, index: usize) -> bool {
        index.checked_sub(self.first_index).is_some_and(|i| i < self.slots.len())
    }

    /// Reads a message; like a modem, reading an unread message marks it read.
    pub fn read(&mut self, index: usize) -> Option<Stored> {
        let slot = self.slot_mut(index)?.as_mut()?;
        let before = slot.clone();
        if slot.stat == Stat::RecUnread {
            slot.stat = Stat::RecRead;
        }
        Some(before)
    }

    /// Lists messages with `stat` (None = all), marking unread ones read.
    pub fn list(&mut self, stat: Option<Stat>) -> Vec<(usize, Stored)> {
        let first = self.first_index;
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(m) = slot.as_mut()
                && stat.is_none_or(|s| s == m.stat)
            {
                out.push((i + first, m.clone()));
                if m.stat == Stat::RecUnread {
                    m.stat = Stat::RecRead;
                }
            }
        }
        out
    }

    /// A copy of every filled slot, without changing any stat (for the control channel).
    pub fn snapshot(&self) -> Vec<(usize, Stored)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|m| (i + self.first_index, m.clone())))
            .collect()
    }

    /// Deletes one message. Deleting an empty but valid slot succeeds, as on real modems.
    pub fn delete(&mut self, index: usize) -> bool {
        match self.slot_mut(index) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// AT+CMGD delflag 1..4: 1 read, 2 read+sent, 3 read+sent+unsent, 4 all.
    pub fn delete_by_flag(&mut self, flag: u8) {
        for slot in &mut self.slots {
            let remove = match slot {
                Some(m) => match flag {
                    1 => m.stat == Stat::RecRead,
                    2 => matches!(m.stat, Stat::RecRead | Stat::StoSent),
                    3 => m.stat != Stat::RecUnread,
                    _ => true,
                },
                None => false,
            };
            if remove {
                *slot = None;
            }
        }
    }

    /// Fills every free slot with a read message made by `make(n)` (for `--storage-full`).
    pub fn fill(&mut self, mut make: impl FnMut(usize) -> String) {
        for (n, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = Some(Stored { stat: Stat::RecRead, pdu: make(n) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_store_queues_and_drains_in_delivery_order() {
        let mut s = Storage::new(2, 1);
        assert_eq!(s.deliver("A".into()), Some(1));
        assert_eq!(s.deliver("B".into()), Some(2));
        assert_eq!(s.deliver("C".into()), None);
        assert_eq!(s.deliver("D".into()), None);
        assert_eq!(s.queued(), 2);
        assert!(s.delete(1));
        assert_eq!(s.drain_queue(), vec![1]);
        assert_eq!(s.read(1).unwrap().pdu, "C");
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn reading_marks_unread_messages_read() {
        let mut s = Storage::new(3, 0);
        assert_eq!(s.deliver("A".into()), Some(0));
        assert_eq!(s.read(0).unwrap().stat, Stat::RecUnread);
        assert_eq!(s.read(0).unwrap().stat, Stat::RecRead);
        assert_eq!(s.list(Some(Stat::RecUnread)).len(), 0);
        assert_eq!(s.list(None).len(), 1);
    }

    #[test]
    fn indices_outside_the_store_are_invalid() {
        let mut s = Storage::new(3, 1);
        assert!(!s.valid_index(0));
        assert!(s.valid_index(3));
        assert!(!s.valid_index(4));
        assert!(!s.delete(4));
        assert!(s.read(2).is_none());
    }

    #[test]
    fn delete_flag_four_removes_everything_and_one_only_read() {
        let mut s = Storage::new(3, 1);
        s.deliver("A".into());
        s.deliver("B".into());
        s.read(1);
        s.delete_by_flag(1);
        assert_eq!(s.used(), 1);
        s.delete_by_flag(4);
        assert_eq!(s.used(), 0);
    }
}
