#![no_main]
//! Fuzz target `csv_labs`: arbitrary bytes through `marrow::fuzz::Target::Labs`.

use libfuzzer_sys::fuzz_target;
use marrow::fuzz::{Harness, Target};
use std::cell::RefCell;

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new());
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        let _ = h.borrow_mut().run(Target::Labs, data);
    });
});
