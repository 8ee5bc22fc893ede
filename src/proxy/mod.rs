//! Forwarding a request to its route's upstream and the response back, byte for byte.
