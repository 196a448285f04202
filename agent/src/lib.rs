//! cutover: owns the blue-green and canary routing decision for the services behind one
//! HAProxy or Nginx host, and carries it to the proxy with the least disruption.
#![forbid(unsafe_code)]

pub mod proxy;
