"""The pure core of talksync: the dataflow specs, the data model, canonical values, the mapping
and the planner. Nothing here imports Beam, an HTTP client, a store or another talksync
package, so each piece is testable as plain functions (docs/architecture.md, "Layers").
"""
