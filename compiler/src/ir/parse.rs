//! IR text form: parsing what print.rs writes.
