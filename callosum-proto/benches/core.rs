//! Micro-benchmarks of the core's hot operations, each group with a baseline measured in the
//! same run: `cargo bench -p callosum-proto --bench core`. The `bench-ratios` program of
//! `callosum-tests` turns this output into ratios; `BENCHMARKS.md` says what each one means.
//!
//! Every group has a `baseline` benchmark (with the same arguments where the group has
//! arguments): the plain standard-library operation closest to what the core does.

use callosum_proto::allocator::{FixedSlotAllocator, GrowableSlotAllocator, SlotHandle};
use callosum_proto::pool::{Checkin, LeasePolicy, Offer, Pool, PoolConfig};
use callosum_proto::rover::{Action, Event, Rover, RoverConfig};
use callosum_proto::slot_line::encode_into;
use callosum_proto::{DecodeError, Decoded, Decoder, Instant, Rng, ServerId, SlotLine};
use divan::{Bencher, black_box};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

fn main() {
    divan::main();
}

/// The two lengths of slot line: 3 bytes (`7\r\n`) and 12 bytes (`4294967295\r\n`).
const DIGITS: [&str; 2] = ["7", "4294967295"];

/// Reading the slot line a client receives.
///
/// Both sides read the same bytes (the digits of one heap-allocated line), each behind
/// `black_box`, and both hand divan the same thing, the slot as an `Option<u32>`, read the
/// way a caller reads it (a match on the outcome). Handing divan the decoder's whole
/// 24-byte `Result` instead would time a stack copy of it too: written by `feed` in parts
/// and read back in 16-byte pieces, it stalls store forwarding, which cost 2 to 4 ns a call
/// in that form of this benchmark (a 3-byte line: 7.8 ns then, 4.1 now), none of it in the
/// decoder.
mod decode {
    use super::*;

    /// The slot a line decoded to, as a caller reads it.
    fn slot(outcome: Result<Decoded, DecodeError>) -> Option<u32> {
        match outcome {
            Ok(Decoded::Slot { slot, .. }) => Some(slot),
            Ok(Decoded::NeedMore) | Err(_) => None,
        }
    }

    /// `str::parse::<u32>` of the same digits: the standard library's number parsing.
    #[divan::bench(args = DIGITS)]
    fn baseline(bencher: Bencher, digits: &str) {
        let line = format!("{digits}\r\n");
        let digits = &line[..digits.len()];
        bencher.bench_local(|| black_box(digits).parse::<u32>().ok());
    }

    /// The whole line in one `feed`, as a read usually delivers it.
    #[divan::bench(args = DIGITS)]
    fn whole(bencher: Bencher, digits: &str) {
        let line = format!("{digits}\r\n");
        bencher.bench_local(|| slot(Decoder::new().feed(black_box(line.as_bytes()))));
    }

    /// One `feed` per byte: the worst split a peer can impose.
    #[divan::bench(args = DIGITS)]
    fn bytewise(bencher: Bencher, digits: &str) {
        let line = format!("{digits}\r\n");
        bencher.bench_local(|| {
            let mut decoder = Decoder::new();
            let mut last = Ok(Decoded::NeedMore);
            for byte in black_box(line.as_bytes()).chunks(1) {
                last = decoder.feed(byte);
            }
            slot(last)
        });
    }
}

/// Writing the slot line a server sends.
mod encode {
    use super::*;

    /// Slots whose lines are 3 and 12 bytes long.
    const SLOTS: [u32; 2] = [7, u32::MAX];

    /// `write!(buf, "{slot}\r\n")` into a stack buffer: the standard library's formatting.
    #[divan::bench(args = SLOTS)]
    fn baseline(bencher: Bencher, slot: u32) {
        bencher.bench_local(|| {
            let mut buf = [0u8; 12];
            let mut out = &mut buf[..];
            std::io::Write::write_fmt(&mut out, format_args!("{}\r\n", black_box(slot)))
                .expect("12 bytes fit every slot line");
            buf
        });
    }

    /// `encode_into` a caller's buffer.
    #[divan::bench(args = SLOTS)]
    fn encode_into_buf(bencher: Bencher, slot: u32) {
        bencher.bench_local(|| {
            let mut buf = [0u8; 12];
            let len = encode_into(black_box(slot), &mut buf);
            (buf, len)
        });
    }

    /// `SlotLine::new`, what the server core hands the adapters.
    #[divan::bench(args = SLOTS)]
    fn slot_line(bencher: Bencher, slot: u32) {
        bencher.bench_local(|| SlotLine::new(black_box(slot)));
    }
}

/// The server's slot allocator: one acquire and one release with `n` slots in use.
mod allocator {
    use super::*;

    /// Slots in use while the pair runs.
    const IN_USE: [u32; 3] = [10, 1_000, 100_000];

    /// A `BinaryHeap<Reverse<u32>>` (a min-heap, what the growable storage's free set was
    /// before it was a bitmap) holding `n` entries: push the smallest value and pop it again.
    #[divan::bench(args = IN_USE)]
    fn baseline(bencher: Bencher, n: u32) {
        let mut heap: BinaryHeap<Reverse<u32>> = (1..=n).map(Reverse).collect();
        bencher.bench_local(|| {
            heap.push(Reverse(black_box(0)));
            heap.pop()
        });
    }

    /// Slots `0..n` in use and none free: the pair takes and gives back slot `n`.
    #[divan::bench(args = IN_USE)]
    fn acquire_release(bencher: Bencher, n: u32) {
        let mut slots = GrowableSlotAllocator::new(None).expect("unlimited");
        let held: Vec<SlotHandle> = (0..n).map(|_| slots.acquire().expect("free")).collect();
        bencher.bench_local(|| {
            let handle = slots.acquire().expect("free");
            slots.release(black_box(handle))
        });
        drop(held);
    }

    /// `n` slots in use and `n` free, interleaved (every other slot of `0..2n` released):
    /// the pair takes the lowest of `n` free slots and gives it back.
    #[divan::bench(args = IN_USE)]
    fn acquire_release_with_holes(bencher: Bencher, n: u32) {
        let mut slots = GrowableSlotAllocator::new(None).expect("unlimited");
        let mut held: Vec<SlotHandle> =
            (0..2 * n).map(|_| slots.acquire().expect("free")).collect();
        for handle in held.extract_if(.., |handle| handle.slot() % 2 == 0) {
            slots.release(handle).expect("held");
        }
        assert_eq!(slots.in_use(), n);
        bencher.bench_local(|| {
            let handle = slots.acquire().expect("free");
            slots.release(black_box(handle))
        });
    }
}

/// The fixed-capacity allocator (`no_std` without `alloc`), whose free set is a min-heap:
/// `N` slots, every other one released, so `N / 2` in use and `N / 2` holes.
mod fixed_allocator {
    use super::*;

    /// Capacities: a small device's 16 slots, 2,000 and 200,000 (the growable group's
    /// 1,000 and 100,000 in use with as many holes).
    const CAPACITY: [usize; 3] = [16, 2_000, 200_000];

    /// A `BinaryHeap<Reverse<u32>>` holding `N / 2` entries: push the smallest value and pop
    /// it again, the bare operation of the heap the free set is.
    #[divan::bench(consts = CAPACITY)]
    fn baseline<const N: usize>(bencher: Bencher) {
        let mut heap: BinaryHeap<Reverse<u32>> = (1..=N as u32 / 2).map(Reverse).collect();
        bencher.bench_local(|| {
            heap.push(Reverse(black_box(0)));
            heap.pop()
        });
    }

    /// The pair pops the lowest of `N / 2` free slots and pushes it back.
    #[divan::bench(consts = CAPACITY)]
    fn acquire_release_with_holes<const N: usize>(bencher: Bencher) {
        // Boxed: at 200,000 slots the allocator is 1.6 MB.
        let mut slots = Box::new(FixedSlotAllocator::<N>::new(None).expect("N > 0"));
        let mut held: Vec<SlotHandle> = (0..N).map(|_| slots.acquire().expect("free")).collect();
        for handle in held.extract_if(.., |handle| handle.slot() % 2 == 0) {
            slots.release(handle).expect("held");
        }
        assert_eq!(slots.in_use() as usize, N / 2);
        bencher.bench_local(|| {
            let handle = slots.acquire().expect("free");
            slots.release(black_box(handle))
        });
    }
}

/// The client's pool.
mod pool {
    use super::*;

    /// The pool sizes of the issue: the default and a large one.
    const MAX_SLOTS: [usize; 2] = [100, 10_000];

    /// A full pool of idle connections from `servers` servers, slots `0..max/servers` each.
    fn full_pool(max_slots: usize, servers: u32) -> Pool<u64> {
        full_pool_with(max_slots, servers, LeasePolicy::Lowest)
    }

    /// [`full_pool`] lending by `policy`.
    fn full_pool_with(max_slots: usize, servers: u32, policy: LeasePolicy) -> Pool<u64> {
        let config = PoolConfig { max_slots };
        let mut pool = Pool::with_policy(config, policy, 1).expect("valid");
        for index in 0..max_slots as u32 {
            let offer = pool.offer(ServerId(index % servers), index / servers, u64::from(index));
            assert!(matches!(offer, Offer::Kept(_)));
        }
        pool
    }

    /// A `BinaryHeap` of `(slot, record)` with `max` entries: pop the lowest and push it back,
    /// the plain heap a pool without ties, eviction or leases would be.
    #[divan::bench(args = MAX_SLOTS)]
    fn baseline(bencher: Bencher, max_slots: usize) {
        let mut heap: BinaryHeap<Reverse<(u32, u32)>> = (0..max_slots as u32)
            .map(|i| Reverse((i / 10, i)))
            .collect();
        bencher.bench_local(|| {
            let top = heap.pop().expect("full");
            heap.push(black_box(top));
        });
    }

    /// Checkout of the lowest idle connection and its checkin; one server, so no ties.
    #[divan::bench(args = MAX_SLOTS)]
    fn checkout_checkin_one_server(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool(max_slots, 1);
        bencher.bench_local(|| {
            let lease = pool.checkout().expect("idle");
            let checkin = pool.checkin(black_box(lease.id), lease.conn);
            assert!(matches!(checkin, Ok(Checkin::Idle(_))));
        });
    }

    /// Checkout and checkin with ten servers: ten idle connections tie for the lowest slot
    /// and checkout picks one at random.
    #[divan::bench(args = MAX_SLOTS)]
    fn checkout_checkin_ten_servers(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool(max_slots, 10);
        bencher.bench_local(|| {
            let lease = pool.checkout().expect("idle");
            let checkin = pool.checkin(black_box(lease.id), lease.conn);
            assert!(matches!(checkin, Ok(Checkin::Idle(_))));
        });
    }

    /// Checkout of a random idle connection (the client's default lease policy) and its
    /// checkin, ten servers: a draw into an unordered idle set, whatever the ties.
    #[divan::bench(args = MAX_SLOTS)]
    fn checkout_random_checkin_ten_servers(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool_with(max_slots, 10, LeasePolicy::Random);
        bencher.bench_local(|| {
            let lease = pool.checkout().expect("idle");
            let checkin = pool.checkin(black_box(lease.id), lease.conn);
            assert!(matches!(checkin, Ok(Checkin::Idle(_))));
        });
    }

    /// An offer kept by a pool with room, then the same connection removed (a pair, so the
    /// pool stays one short of full).
    #[divan::bench(args = MAX_SLOTS)]
    fn offer_kept_and_remove(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool(max_slots, 10);
        let lease = pool.checkout().expect("idle");
        let _ = pool.remove(lease.id).expect("leased");
        bencher.bench_local(|| {
            let Offer::Kept(id) = pool.offer(ServerId(99), black_box(0), 0) else {
                unreachable!("the pool has room")
            };
            pool.remove(id)
        });
    }

    /// An offer no better than the highest slot held: rejected.
    #[divan::bench(args = MAX_SLOTS)]
    fn offer_rejected(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool(max_slots, 10);
        bencher.bench_local(|| pool.offer(ServerId(99), black_box(u32::MAX), 0));
    }

    /// An offer better than the highest slot held: kept, and the highest (idle) evicted.
    /// The pool starts with a connection at slot `u32::MAX` and each offer is one lower than
    /// the last, so every one of them replaces the one before.
    #[divan::bench(args = MAX_SLOTS)]
    fn offer_replacing(bencher: Bencher, max_slots: usize) {
        let mut pool = full_pool(max_slots, 10);
        let lease = pool.checkout().expect("idle");
        let _ = pool.remove(lease.id).expect("leased");
        let mut slot = u32::MAX;
        let Offer::Kept(_) = pool.offer(ServerId(99), slot, 0) else {
            unreachable!("the pool has room")
        };
        bencher.bench_local(|| {
            slot -= 1;
            let offer = pool.offer(ServerId(99), black_box(slot), 0);
            assert!(matches!(offer, Offer::Replaced { .. }));
            offer
        });
    }
}

/// The rover choosing where to connect next.
mod rover {
    use super::*;

    /// Server set sizes: one, and the 1,000.
    const SERVERS: [u32; 2] = [1, 1_000];

    /// `Rng::below(n)`: the uniform draw at the heart of the decision.
    #[divan::bench(args = SERVERS)]
    fn baseline(bencher: Bencher, servers: u32) {
        let mut rng = Rng::new(1);
        bencher.bench_local(|| rng.below(black_box(u64::from(servers))));
    }

    /// One decision and its bookkeeping: the pool wants one more connection, fill mode picks
    /// a server and launches an attempt, the attempt reads its line and delivers the
    /// connection.
    #[divan::bench(args = SERVERS)]
    fn decision(bencher: Bencher, servers: u32) {
        let config = RoverConfig {
            fill: true,
            ..RoverConfig::default()
        };
        let mut rover = Rover::new(config, 1).expect("valid");
        for id in 0..servers {
            rover.add_server(ServerId(id));
        }
        let now = Instant::ZERO;
        rover.start(now);
        // The start's own attempt: connect it and drain, so every iteration starts idle.
        while let Some(action) = rover.poll_action() {
            if let Action::Connect { attempt, .. } = action {
                let _ = rover.handle_received(attempt, b"0\r\n", now);
            }
        }
        while rover.poll_event().is_some() {}
        bencher.bench_local(|| {
            rover.set_demand(black_box(1), now);
            let Some(Action::Connect { attempt, .. }) = rover.poll_action() else {
                unreachable!("fill mode launches one attempt")
            };
            let consumed = rover.handle_received(attempt, b"0\r\n", now);
            let Some(Event::Connection { server, .. }) = rover.poll_event() else {
                unreachable!("the line completes the attempt")
            };
            (consumed, server)
        });
    }
}
