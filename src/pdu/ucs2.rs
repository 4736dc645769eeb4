//! UCS-2 user data (TS 23.038 6.2.3): UTF-16 big-endian code units, surrogate pairs for emoji.
