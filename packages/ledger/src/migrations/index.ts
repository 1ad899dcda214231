import { Migration20251126090000_initial } from "./Migration20251126090000_initial.js";

// Listed explicitly (not globbed) so the built dist finds them under ESM and tsc alike.
// Append new migrations here, in order; never edit one that has shipped.
export const migrationsList = [
  { name: "Migration20251126090000_initial", class: Migration20251126090000_initial },
];
