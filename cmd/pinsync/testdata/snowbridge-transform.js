// Snowbridge transform for pinsync: the pinsync event a self-describing
// Snowplow event carries, as native JSON keyed by its profile.
function main(input) {
  var ev = input.Data.unstruct_event_com_acme_pinsync_event_1;
  if (!ev || typeof ev.profile !== "string" || ev.profile === "") {
    return { FilterOut: true };
  }
  return { Data: ev, PartitionKey: ev.profile };
}
