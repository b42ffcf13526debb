# policies/sanctions_screening.yaml in Rego (OPA v1 syntax), for benchmarks/bench_engine.py.
package sanctions_screening

import rego.v1

declared := ["sanctions_listed", "is_pep"]

missing if {
	some name in declared
	not name in object.keys(input)
}

invalid if {
	some name in declared
	not is_boolean(input[name])
}

decision := "missing_evidence" if missing
else := "invalid_evidence" if invalid
else := "sanctioned" if input.sanctions_listed
else := "politically_exposed" if input.is_pep
else := "not_listed"
