"""The JSON APIs: the call log (`/api/calls`) and the built-in portal's REST contract
(`/portal/api/v1`)."""
