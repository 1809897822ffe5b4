"""The REST API: request handling, validation, the table, history queries, the OpenAPI contract."""
