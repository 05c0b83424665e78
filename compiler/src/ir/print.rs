//! IR text form: printing (see parse.rs for the reader).
