//! Pure study logic: no I/O, no database, no terminal.

pub mod agreement;
pub mod clock;
pub mod consort;
pub mod dxa;
pub mod eligibility;
pub mod evaluation;
pub mod followup;
pub mod outcomes;
pub mod protocol;
pub mod reading;
pub mod records;
pub mod roc;
pub mod stats;
pub mod status;
pub mod summary;
pub mod survival;
pub mod user;
