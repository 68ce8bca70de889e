"""Business Central API v2.0 contracts from Microsoft Learn, against ``sandbox.businesscentral``."""
