//! SPNEGO (RFC 4178) token wrapping for Negotiate. (being written)
