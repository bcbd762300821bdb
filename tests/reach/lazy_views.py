"""Ordinary views whose querysets are made when this module is imported:
Django imports the URLconf (tests/reach/lazy_urls.py, and so this module) on
the first request, inside the middleware, with that request's tenant bound
(tests/isolation/test_isolation_reach.py)."""

from django import forms
from django.contrib.sitemaps import GenericSitemap
from django.db.models import Prefetch, Q
from django.http import HttpResponse
from django.views.generic import ListView

from .models import Category, Folder, Item

# Made with the first visitor's tenant bound.
FOLDERS = Folder.objects.order_by("name")
BY_FOLDER = Prefetch("item_set", queryset=Item.objects.order_by("name"))
SITEMAP = GenericSitemap({"queryset": Item.objects.all()})


class ItemList(ListView):
    queryset = Item.objects.all()

    def render_to_response(self, context, **kwargs):
        return HttpResponse(",".join(sorted(i.name for i in context["object_list"])))


class ItemForm(forms.ModelForm):
    class Meta:
        model = Item
        fields = ["name", "folder"]


class FolderChoice(forms.Form):
    folder = forms.ModelChoiceField(queryset=Folder.objects.all())
    folders = forms.ModelMultipleChoiceField(queryset=Folder.objects.all())


class LimitedForm(forms.ModelForm):
    # limit_choices_to with a subquery made now (a ModelForm applies it)
    category = forms.ModelChoiceField(
        queryset=Category.objects.all(),
        limit_choices_to=Q(pk__in=Item.objects.values("category")),
    )

    class Meta:
        model = Item
        fields = ["category"]


class ApiView:
    """A DRF-style view: a class attribute, re-evaluated per request with .all()."""

    queryset = Item.objects.filter(name__contains="-")

    def get_queryset(self):
        return self.queryset.all()


def names(rows):
    return HttpResponse(",".join(sorted(str(row) for row in rows)))


def folder_choices(request):
    return names(label for _, label in ItemForm().fields["folder"].choices if _ != "")


def folder_choices_hand(request):
    return names(label for _, label in FolderChoice().fields["folder"].choices if _ != "")


def folder_multiple(request):
    return names(label for _, label in FolderChoice().fields["folders"].choices)


def limited_choices(request):
    return names(label for _, label in LimitedForm().fields["category"].choices if _ != "")


def folder_names(request):
    return names(f.name for f in FOLDERS)  # the module-level queryset itself, cache and all


def folder_names_all(request):
    return names(f.name for f in FOLDERS.all())


def prefetched(request):
    rows = Folder.objects.prefetch_related(BY_FOLDER)
    return names(f"{folder.name}/{item.name}" for folder in rows for item in folder.item_set.all())


def sitemap_items(request):
    return names(SITEMAP.items())


def api_items(request):
    return names(ApiView().get_queryset())
