//! The modem stack: the serial line (`tty`) and the modem simulator (`sim`).
pub mod sim;
pub mod tty;
