"""The operations console: web pages for support supervisors and ops over the services' read
APIs (`aftersales console`). It reads no service's tables."""
