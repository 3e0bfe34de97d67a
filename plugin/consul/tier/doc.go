// Package tier lets a plugin instance that replicates Consul (a tier) serve
// what it holds to other instances (followers), and defines what they
// exchange.
//
// A node-local resolver on every node of a large fleet cannot watch Consul
// itself: the servers would hold one stream per (node, service), N x S in
// all. Instead two or three tier instances watch Consul, and each follower
// holds one long-poll to a tier, whatever the number of datacenters and
// services: Consul pays for the tier alone, and a follower still answers
// every name from its own replica (and its snapshot file) when the tier or
// Consul is gone.
//
// The unit of exchange is the snapshot.Set, exactly what the snapshot file
// holds. The tier numbers each Set it serves (a generation); a follower
// sends the generation it holds and gets, as a Consul blocking query would,
// the changes since then (a Delta) when there are any, the whole Set (the
// snapshot file's encoding) when it is new or too far behind, or nothing at
// the wait's end.
package tier
