//! Tailgate host.
