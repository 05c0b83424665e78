//! Binding run-time tensors to a graph: dims from shapes, validation, seeded fill.
