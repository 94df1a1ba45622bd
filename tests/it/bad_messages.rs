//! A ledger of error messages known to be poor. Each test asserts today's
//! behaviour; when a message improves, the test fails and moves to the UI
//! fixtures.
//!
//! Empty: the last two entries (a misspelt second word of `detect
//! voicemail` pointed at `detect`; a missing `}` was reported at the end of
//! the file) became `tests/ui/parse/err/E0101_misspelt_second_word.flow`
//! and `E0101_unclosed_brace.flow`. Add an entry when a message is found
//! poor.
