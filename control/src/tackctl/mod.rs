//! `tackctl`'s library half: its command words turned into API requests
//! ([`words`]) and the answers turned into tables ([`tables`]).

pub mod tables;
pub mod words;
