//! Integration-test helpers shared by the test files in this folder.
