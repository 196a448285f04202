//! Master-CLI client.
