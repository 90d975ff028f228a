// Wide math scrolls sideways in its own box, and says so (see _static/site.css). Each box that can hide
// part of a formula is watched: a display equation (MathJax's `mjx-container`), the theme's wrapper of
// inline math (`span.math`, which otherwise cuts off a formula wider than the column) and the theme's
// scrolling wrapper of tables. While its content is wider than it, the box has the class `x-scroll`
// (it scrolls), and `x-more-right` / `x-more-left` while some of the content is hidden on that side:
// site.css fades that edge. The marks follow MathJax's typesetting (a mutation), the reader's
// scrolling and every change of size (a narrower window, an opened dropdown).
(() => {
  "use strict";
  const BOX = 'mjx-container[display="true"], span.math, .pst-scrollable-table-container';
  const SLACK = 1; // px: rounding, not overflow

  // What the box shows: the formula as drawn (not scrollWidth: MathJax's hidden copy of a formula for
  // screen readers can be wider than the formula drawn), or the table.
  function content(box) {
    return box.matches(".pst-scrollable-table-container") ? box.firstElementChild : box.querySelector("mjx-math");
  }

  function mark(box) {
    const drawn = content(box);
    let left = 0, right = 0; // how far the content reaches past the box's left and right edge
    if (drawn) {
      const rect = drawn.getBoundingClientRect();
      const edge = box.getBoundingClientRect().left + box.clientLeft;
      left = edge - rect.left;
      right = rect.right - (edge + box.clientWidth);
    }
    const scrolls = left > SLACK || right > SLACK;
    box.classList.toggle("x-scroll", scrolls);
    box.classList.toggle("x-more-left", scrolls && left > SLACK);
    box.classList.toggle("x-more-right", scrolls && right > SLACK);
  }

  const observed = new WeakSet();
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const box = entry.target.matches(BOX) ? entry.target : entry.target.parentElement.closest(BOX);
      if (box) mark(box);
    }
  });

  function observe(element) {
    if (element && !observed.has(element)) {
      observed.add(element);
      resized.observe(element);
    }
  }

  function watch(box) {
    if (!observed.has(box)) box.addEventListener("scroll", () => mark(box), { passive: true });
    observe(box);
    observe(content(box)); // typeset after the box was first seen, or replaced
    mark(box);
  }

  function scan(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const around = node.parentElement && node.parentElement.closest(BOX);
    if (around) watch(around); // new content in a box: MathJax has typeset a formula in it
    if (node.matches(BOX)) watch(node);
    node.querySelectorAll(BOX).forEach(watch);
  }

  function start() {
    scan(document.body);
    new MutationObserver((records) => {
      for (const record of records) record.addedNodes.forEach(scan);
    }).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
