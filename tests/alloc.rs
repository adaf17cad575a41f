//! `Index::search_with` is documented as allocation-free with a warm scratch and an output
//! vector of capacity `k`. A counting global allocator proves it for every kind of search the
//! golden indexes support: the default plan, an explicit plan, a narrower answer width, deny
//! and allow filters, a native and a learned coarse space. Core only (no build needed).

use mrl_index::search::Scratch;
use mrl_index::{Filter, Hit, Index, SearchParams};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// Counts the allocations made by the current thread while `COUNTING` is set.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every call forwards to the system allocator unchanged; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|a| a.get())
}

const K: usize = 5;

fn golden(v: &str) -> Index {
    Index::open(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(v),
    )
    .unwrap()
}

/// Runs every search of `cases` twice (the first warms the scratch and the plan caches),
/// then checks that a third round allocates nothing.
fn check(index: &Index, cases: &[(&str, SearchParams, Filter<'_>)]) {
    let queries: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            (0..index.dim())
                .map(|d| ((i * 31 + d * 7) % 17) as f32 / 17.0 - 0.4)
                .collect()
        })
        .collect();
    let mut scratch = Scratch::default();
    let mut out: Vec<Hit> = Vec::with_capacity(K);
    for (name, params, filter) in cases {
        for _ in 0..2 {
            for q in &queries {
                index
                    .search_with(&mut scratch, q, K, params, filter, &mut out)
                    .unwrap();
            }
        }
        let n = allocations(|| {
            for q in &queries {
                index
                    .search_with(&mut scratch, q, K, params, filter, &mut out)
                    .unwrap();
            }
        });
        assert_eq!(n, 0, "{name}: {n} allocations in 4 warm searches");
        assert_eq!(out.len(), K, "{name}");
    }
}

fn params(plan: Option<&str>, ef: Option<usize>, width: Option<usize>) -> SearchParams {
    SearchParams {
        plan: plan.map(|p| p.parse().unwrap()),
        ef,
        width,
    }
}

#[test]
fn the_counter_sees_allocations() {
    // The check above cannot pass vacuously: an allocation in the counted closure counts.
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(n, 1);
}

#[test]
fn warm_searches_allocate_nothing_native() {
    let index = golden("v1");
    let deny: Vec<u64> = (0..10).map(|i| 1_000_000 + i * 7).collect();
    let allow: Vec<u64> = (0..40).map(|i| 1_000_000 + i * 7).collect();
    check(
        &index,
        &[
            ("default", SearchParams::default(), Filter::NONE),
            (
                "graph plan",
                params(Some("8:10,16:10,32:k"), Some(10), None),
                Filter::NONE,
            ),
            (
                "exact-scan plan",
                params(Some("8:300,16:50,32:k"), None, None),
                Filter::NONE,
            ),
            ("width 16", params(None, None, Some(16)), Filter::NONE),
            ("width 12", params(None, Some(10), Some(12)), Filter::NONE),
            ("deny", params(None, Some(10), None), Filter::deny(&deny)),
            ("allow", SearchParams::default(), Filter::allow(&allow)),
        ],
    );
}

#[test]
fn warm_searches_allocate_nothing_learned() {
    let index = golden("v2");
    let deny: Vec<u64> = (0..10).map(|i| 1_000_000 + i * 7).collect();
    check(
        &index,
        &[
            ("default", SearchParams::default(), Filter::NONE),
            (
                "learned plan",
                params(Some("L8:10,L16:10,32:k"), Some(10), None),
                Filter::NONE,
            ),
            ("width 8", params(None, None, Some(8)), Filter::NONE),
            ("width 20", params(None, Some(10), Some(20)), Filter::NONE),
            ("deny", params(None, Some(10), None), Filter::deny(&deny)),
        ],
    );
}
