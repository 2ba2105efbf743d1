//! Unit tests of the rover.
