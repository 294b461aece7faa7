"""Local tooling: read template.yaml and run its functions the way Lambda and API Gateway would, with no AWS
account and no Docker. Used by `make run` and by the tests."""
