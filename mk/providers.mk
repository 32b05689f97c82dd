# Provider tests: the shared contract suite and each provider's own tests, against real
# servers that tests/providers/backends start on 127.0.0.1 (building what is missing; moto
# for AWS needs no build). K is a pytest -k expression: `make providers-test K=aws`.

.PHONY: providers-test

providers-test: venv ## provider tests against real servers (K=aws picks one backend)
	$(PY) -m pytest tests/providers $(if $(K),-k '$(K)')
