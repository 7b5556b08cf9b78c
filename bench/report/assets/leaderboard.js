// Sortable, filterable tables for the accessbench leaderboard. No dependencies, no network.
(function () {
  "use strict";

  // Numeric columns carry data-value (a number, or "" when there is none); others sort by their text.
  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-value");
    if (raw === null) { return { text: cell.textContent.trim().toLowerCase() }; }
    return raw === "" ? { blank: true } : { number: Number(raw) };
  }

  function compare(a, b) {
    if (a.number !== undefined && b.number !== undefined) { return a.number - b.number; }
    var textA = String(a.text), textB = String(b.text);
    return textA < textB ? -1 : textA > textB ? 1 : 0;
  }

  function sortBy(table, header, index) {
    var body = table.tBodies[0];
    var descending = header.getAttribute("aria-sort") === "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var a = cellValue(x, index), b = cellValue(y, index);
      if (a.blank || b.blank) { return a.blank === b.blank ? 0 : (a.blank ? 1 : -1); }  // blanks last either way
      var order = compare(a, b);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function makeSortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (header.firstChild) { button.appendChild(header.firstChild); }
      header.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, header, index); });
    });
  }

  function applyFilters(table, controls) {
    var text = controls.search ? controls.search.value.trim().toLowerCase() : "";
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var visible = !text || row.textContent.toLowerCase().indexOf(text) !== -1;
      controls.selects.forEach(function (select) {
        if (select.value && row.getAttribute("data-" + select.name) !== select.value) { visible = false; }
      });
      row.hidden = !visible;
      if (visible) { shown += 1; }
    });
    if (controls.count) { controls.count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows"; }
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    var table = document.getElementById("leaderboard");
    if (!table) { return; }
    var controls = {
      search: document.getElementById("filter-text"),
      selects: Array.prototype.slice.call(document.querySelectorAll("select.filter")),
      count: document.getElementById("row-count"),
    };
    var update = function () { applyFilters(table, controls); };
    if (controls.search) { controls.search.addEventListener("input", update); }
    controls.selects.forEach(function (select) { select.addEventListener("change", update); });
    update();
  });
})();
