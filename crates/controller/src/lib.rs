//! weft's controller: the network configuration rules, pools, and instance lifecycle
