//! The reference interpreter: the numerical oracle for every later stage.
