"""Policy simulation: record the input topics, replay them through the services' own handlers
in memory under two policies, and report what would change (`aftersales record`,
`aftersales simulate`; docs/policy-changes.md)."""
