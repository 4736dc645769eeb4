//! GSM 7-bit default alphabet and extension table (TS 23.038 6.2.1), septet packing.
