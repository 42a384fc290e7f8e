//! Pure study logic: no I/O, no database, no terminal.

pub mod agreement;
pub mod dxa;
pub mod eligibility;
pub mod protocol;
pub mod reading;
pub mod records;
pub mod roc;
pub mod status;
pub mod user;
