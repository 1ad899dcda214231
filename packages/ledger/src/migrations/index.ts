import { Migration20251126090000_initial } from "./Migration20251126090000_initial.js";
import { Migration20251127090000_movements } from "./Migration20251127090000_movements.js";
import { Migration20251128090000_chain_constraints } from "./Migration20251128090000_chain_constraints.js";
import { Migration20251129090000_batch_check } from "./Migration20251129090000_batch_check.js";

// Listed explicitly (not globbed) so the built dist finds them under ESM and tsc alike.
// Append new migrations here, in order; never edit one that has shipped.
export const migrationsList = [
  { name: "Migration20251126090000_initial", class: Migration20251126090000_initial },
  { name: "Migration20251127090000_movements", class: Migration20251127090000_movements },
  { name: "Migration20251128090000_chain_constraints", class: Migration20251128090000_chain_constraints },
  { name: "Migration20251129090000_batch_check", class: Migration20251129090000_batch_check },
];
