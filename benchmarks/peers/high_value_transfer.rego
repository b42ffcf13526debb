# policies/high_value_transfer.yaml in Rego (OPA v1 syntax), for benchmarks/bench_engine.py.
package high_value_transfer

import rego.v1

declared := ["citizen_valid", "sanctions_listed", "is_pep"]

missing if {
	some name in declared
	not name in object.keys(input)
}

invalid if {
	some name in declared
	not is_boolean(input[name])
}

# Rego compares values of different types without an error (in regopy 1.5, null, true
# and [20000] are all > 10000), so the engine's "a type mismatch does not match" needs an
# explicit number test.
large_amount if {
	is_number(input.context.amount)
	input.context.amount > 10000
}

decision := "missing_evidence" if missing
else := "invalid_evidence" if invalid
else := "sanctioned" if input.sanctions_listed
else := "invalid_citizen" if not input.citizen_valid
else := "manual_review_required" if {
	input.is_pep
	large_amount
}
else := "approved"
