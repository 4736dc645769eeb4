//! Hex reading and writing with octet offsets for errors.
