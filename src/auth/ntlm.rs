//! NTLM (MS-NLMP) server-side verification. (being written)
