//! The webhook provider. (being written)
