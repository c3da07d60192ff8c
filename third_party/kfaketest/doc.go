// Package kfaketest holds the regression test of the kfake copy in
// third_party/kfake: after kill -9s, a consumer group on the patched broker
// forms within the rebalance timeout, and on upstream kfake (built from the
// module in upstream/, which requires the same version without the
// replace) it does not. It has no code of its own; see PATCH.md in
// third_party/kfake.
package kfaketest
