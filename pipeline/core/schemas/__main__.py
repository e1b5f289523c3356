"""python -m pipeline.core.schemas: print the docs' contract page (docs/contract.md) made from the schema files."""

from pipeline.core.schemas import contract_page

print(contract_page(), end="")
