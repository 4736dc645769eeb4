//! smshub: the clinic's SMS gateway. See ARCHITECTURE.md for the map.
pub mod modem;
pub mod pdu;
